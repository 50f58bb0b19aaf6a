"""Nothing in the package deserialises a pickle (issue 9): no pickle-family imports, torch.load
only with weights_only=True, numpy loads without allow_pickle, transformers weights only as
safetensors. Checkpoints and shipped weights are safetensors (test_trainer, test_shipped_model)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dmd3c_ros"
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal",
                  "cloudpickle"}


def _call_name(node: ast.Call) -> str:
    parts, target = [], node.func
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name):
        parts.append(target.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def offences(source: str, where: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{where}: imports {a.name}" for a in node.names
                      if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if name.endswith("torch.load") and _keyword(node, "weights_only") is not True:
                found.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
            if name.split(".")[-1] == "load" and name.split(".")[0] in ("np", "numpy") \
                    and _keyword(node, "allow_pickle") is True:
                found.append(f"{where}:{node.lineno}: numpy load with allow_pickle=True")
            if name.endswith("from_pretrained") and _keyword(node, "use_safetensors") is not True:
                found.append(f"{where}:{node.lineno}: from_pretrained without "
                             "use_safetensors=True")
    return found


def test_the_package_never_unpickles():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += offences(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "\n".join(found)


def test_the_checker_sees_each_way_in():
    bad = ("import pickle\nfrom joblib import load\nimport torch\nimport numpy as np\n"
           "torch.load('w.pt')\ntorch.load('w.pt', weights_only=False)\n"
           "np.load('a.npz', allow_pickle=True)\nM.from_pretrained('d')\n")
    assert len(offences(bad, "x")) == 6
    good = ("import torch\nimport numpy as np\ntorch.load('w.pt', weights_only=True)\n"
            "np.load('a.npz')\nM.from_pretrained('d', use_safetensors=True)\n")
    assert offences(good, "x") == []
