#!/usr/bin/env python3
"""Executable ``ros2 run mickey_ros relocalize_node``: spin the relocalisation lifecycle node.

With ``autostart`` (default) the node configures and activates itself, as yolo_ros does; a failed
configure (missing or wrong weights, bad parameters) is logged with the exact problem and the
process exits 1 so launch reports it.
"""

import sys


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; return the process exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from mickey_ros.ros.node import RelocalizeNode

    rclpy.init(args=args)
    node = None
    try:
        node = RelocalizeNode()
        if node.autostart and not node.start():
            node.get_logger().fatal("start-up failed (see the error above); exiting with 1")
            return 1
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
