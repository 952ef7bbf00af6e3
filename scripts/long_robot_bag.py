#!/usr/bin/env python3
"""Benchmark input (not a test): a long robot bag, cheaply, for ``mickey-ros dataset``'s speed.

The synthetic drive (``mickey_ros.synth.rosbag``) is periodic: this renders ``--distinct``
frames over one period and writes them again and again for ``--minutes`` at ``--rate`` Hz, each
with the TF of the moment it was rendered, so every image still matches its pose exactly. Frames
are raw rgb8 (``--compressed``: JPEG on ``/camera/image_raw/compressed`` instead).

Example (docs/datasets.md)::

    python scripts/long_robot_bag.py --out /tmp/long.mcap.d --minutes 10 --rate 30 \
        --size 640x480 --compressed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mickey_ros.bags.writer import DEFAULT_QOS, LATCHED_QOS, add_connection, make_typestore, \
    open_writer, write_message
from mickey_ros.relocalization.messages import (
    MessageTypes,
    camera_info_msg,
    rgb_to_compressed_image_msg,
    rgb_to_image_msg,
    tf_message,
    transform_stamped_msg,
)
from mickey_ros.synth.rosbag import START_NS, plan_robot_drive
from mickey_ros.synth.render import Renderer
from mickey_ros.synth.textures import load_texture_bank


def render_period(seed: int, size_wh: tuple[int, int], distinct: int, compressed: bool, types):
    """(times in one period (s), image messages without header stamps) and the drive."""
    drive = plan_robot_drive(seed, size_wh)
    renderer = Renderer(load_texture_bank())
    renderer.set_scene(drive.scene)
    times = np.arange(distinct) * drive.path.period_s / distinct
    images = []
    try:
        for t_s in tqdm(times, desc="render", unit="frame"):
            T_world_optical = drive.T_world_odom @ drive.T_odom_optical(t_s)
            rgb = renderer.render(np.linalg.inv(T_world_optical), drive.K, size_wh,
                                  drive.exposure)[0]
            if compressed:
                images.append(rgb_to_compressed_image_msg(types, rgb, 0, "camera_optical_frame",
                                                          fmt="jpeg", quality=90))
            else:
                images.append(rgb_to_image_msg(types, rgb, 0, "camera_optical_frame"))
    finally:
        renderer.release()
    return times, images, drive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--size", default="640x480", help="WxH")
    parser.add_argument("--distinct", type=int, default=300, help="rendered frames per period")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    parser.add_argument("--compressed", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size_wh = tuple(int(v) for v in args.size.lower().split("x"))
    ts = make_typestore()
    types = MessageTypes.from_typestore(ts)
    times, images, drive = render_period(args.seed, size_wh, args.distinct, args.compressed,
                                         types)
    count = round(args.minutes * 60 * args.rate)
    image_topic = "/camera/image_raw" + ("/compressed" if args.compressed else "")
    image_type = "sensor_msgs/msg/" + ("CompressedImage" if args.compressed else "Image")
    with open_writer(args.out, args.storage) as w:
        static = add_connection(w, "/tf_static", "tf2_msgs/msg/TFMessage", ts, LATCHED_QOS)
        tf = add_connection(w, "/tf", "tf2_msgs/msg/TFMessage", ts, DEFAULT_QOS)
        info = add_connection(w, "/camera/camera_info", "sensor_msgs/msg/CameraInfo", ts)
        image = add_connection(w, image_topic, image_type, ts)
        mount = [transform_stamped_msg(types, drive.T_base_link, START_NS, "base_link",
                                       "camera_link"),
                 transform_stamped_msg(types, drive.T_link_optical, START_NS, "camera_link",
                                       "camera_optical_frame")]
        write_message(w, static, START_NS, tf_message(types, mount), ts)
        period = drive.path.period_s
        for k in tqdm(range(count), desc="write", unit="frame"):
            stamp = START_NS + round(k * 1e9 / args.rate)
            i = int(round((k / args.rate) % period / period * len(times))) % len(times)
            T = drive.path.T_odom_base(times[i])  # the pose the image was rendered at
            msg = tf_message(types, [transform_stamped_msg(types, T, stamp, "odom", "base_link")])
            write_message(w, tf, stamp, msg, ts)
            write_message(w, info, stamp, camera_info_msg(types, drive.K, *size_wh, stamp,
                                                          "camera_optical_frame"), ts)
            msg = images[i]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            write_message(w, image, stamp, msg, ts)


if __name__ == "__main__":
    main()
