"""pip install of the mickey_ros library and its console scripts (colcon uses CMakeLists.txt)."""

from setuptools import find_packages, setup

setup(
    name="mickey_ros",
    version="0.1.0",
    description="Metric relative pose from two RGB images with MicKey, for ROS 2 robots",
    # mickey_ros/data holds no code (the demo model): a data-only package, listed explicitly so
    # setuptools ships it without its "absent from the packages configuration" warning.
    packages=[*find_packages(include=["mickey_ros", "mickey_ros.*"]), "mickey_ros.data"],
    package_data={"mickey_ros.data": ["*.ckpt"]},
    license="Apache-2.0",
    python_requires=">=3.10",
    # torch is the user's build (CUDA, JetPack or CPU): install it first, never pinned here.
    install_requires=[
        "numpy",
        "PyYAML",
        "opencv-python-headless",
        "tqdm",
        "matplotlib",
        "rosbags>=0.10",
        "rosbags-image",
        "mcap",  # recovers truncated MCAP bags chunk by chunk in replay
    ],
    extras_require={
        "synth": ["moderngl>=5.8", "scikit-image"],
        "train": ["lightning>=2.2"],
        # ONNX export and the onnxruntime backend (CPU); on a GPU install onnxruntime-gpu instead
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "test": [
            "pytest",
            "hypothesis",
            "catkin_pkg",
            "mcap-ros2-support",
            "transformers",
            "moderngl>=5.8",
            "scikit-image",
            "lightning>=2.2",
            "onnx",
            "onnxruntime",
            "onnxscript",
        ],
    },
    entry_points={
        "console_scripts": [
            "mickey-ros = mickey_ros.cli.main:main",
            "mickey-train = mickey_ros.train.main:cli",
        ]
    },
)
