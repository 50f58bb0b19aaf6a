"""ament_python package: `colcon build` where ROS 2 is sourced, `pip install -e .` in .venv."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dmd3c_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py") + glob("launch/*.yaml")
         + glob("launch/*.xml")),
        (f"share/{PACKAGE}/config", glob("config/*.xml") + glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.yaml")
         + glob("models/*.safetensors") + glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    extras_require={
        # NVIDIA GPU inference: TensorRT and NVIDIA's CUDA driver bindings (binary wheels: the
        # NVIDIA driver is all they need). On Jetson use the TensorRT of JetPack instead.
        "tensorrt": ["tensorrt-cu12==11.4.0.106", "cuda-python==12.9.10"],
        # pycuda instead of cuda-python where it is wanted (pip builds it: needs the CUDA toolkit).
        "pycuda": ["pycuda==2026.1"],
    },
    zip_safe=True,
    maintainer="dmd3c_ros developers",
    maintainer_email="dmd3c-ros@users.noreply.github.com",
    description="Dense metric depth from camera + LiDAR (ROS 2, TensorRT / ONNX Runtime)",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "dmd3c = dmd3c_ros.cli:main",
            "completion_node = dmd3c_ros.ros.completion_node:main",
            "surround_node = dmd3c_ros.ros.surround_node:main",
        ],
    },
)
