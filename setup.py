"""pip install of the mickey_ros library and its console scripts (colcon uses CMakeLists.txt)."""

from setuptools import find_packages, setup

setup(
    name="mickey_ros",
    version="0.1.0",
    description="Metric relative pose from two RGB images with MicKey, for ROS 2 robots",
    packages=find_packages(include=["mickey_ros", "mickey_ros.*"]),
    package_data={"mickey_ros": ["data/*", "data/**/*"]},
    include_package_data=True,
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
        "test": [
            "pytest",
            "hypothesis",
            "catkin_pkg",
            "mcap-ros2-support",
            "transformers",
            "moderngl>=5.8",
            "scikit-image",
            "lightning>=2.2",
        ],
    },
    entry_points={
        "console_scripts": [
            "mickey-ros = mickey_ros.cli.main:main",
            "mickey-train = mickey_ros.train.main:cli",
        ]
    },
)
