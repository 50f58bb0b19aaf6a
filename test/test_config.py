import numpy as np
import pytest

from dmd3c_ros.core.config import CompletionConfig, ConfigError, parse_extrinsic

IDENTITY = [1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]


def test_defaults_are_valid_and_extrinsic_empty_means_tf():
    config = CompletionConfig()
    assert config.extrinsic is None and config.backend == "auto"


def test_from_mapping_converts_integers_and_arrays():
    config = CompletionConfig.from_mapping({"max_depth": 80, "lidar_to_camera": IDENTITY,
                                            "sync_slop": 0.1})
    assert config.max_depth == 80.0 and isinstance(config.max_depth, float)
    np.testing.assert_array_equal(config.extrinsic, np.eye(4))
    assert CompletionConfig.from_mapping({"lidar_to_camera": None}).extrinsic is None


@pytest.mark.parametrize("values, name", [
    ({"backend": "cuda"}, "backend"),
    ({"precision": "fp64"}, "precision"),
    ({"qos_reliability": "sometimes"}, "qos_reliability"),
    ({"sync_slop": 0.0}, "sync_slop"),
    ({"queue_size": 0}, "queue_size"),
    ({"min_depth": 50.0, "max_depth": 10.0}, "min_depth"),
    ({"lidar_timeout": -1.0}, "lidar_timeout"),
    ({"max_depth": "far"}, "max_depth"),
    ({"publish_points": 1}, "publish_points"),
    ({"queue_size": True}, "queue_size"),
    ({"lidar_to_camera": [1.0, 2.0]}, "lidar_to_camera"),
    ({"no_such_parameter": 1}, "no_such_parameter"),
])
def test_bad_values_name_the_parameter(values, name):
    with pytest.raises(ConfigError, match=name):
        CompletionConfig.from_mapping(values)


def test_extrinsic_checks_catch_common_mistakes():
    T = np.eye(4)
    T[:3, 3] = [0.1, -0.2, 0.3]
    np.testing.assert_array_equal(parse_extrinsic(T.ravel()), T)
    with pytest.raises(ConfigError, match="column-major"):
        parse_extrinsic(T.T.ravel())
    scaled = np.eye(4) * 2
    scaled[3, 3] = 1
    with pytest.raises(ConfigError, match="not a rotation"):
        parse_extrinsic(scaled.ravel())
    mirrored = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ConfigError, match="not a rotation"):
        parse_extrinsic(mirrored.ravel())
    with pytest.raises(ConfigError, match="NaN"):
        parse_extrinsic([np.nan] * 16)
