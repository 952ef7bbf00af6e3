#!/usr/bin/env python3
"""Executable ``ros2 run mickey_ros relocalize_node``: spin the relocalisation lifecycle node.

With ``autostart`` (default) the node configures and activates itself, as yolo_ros does; a failed
configure (missing or wrong weights, bad parameters) is logged with the exact problem and the
process exits 1 so launch reports it.

Ctrl-C / SIGTERM: rclpy's own signal handlers would shut the context down first, so a frame in
flight would be published on an invalid context (an ERROR with a traceback). They are disabled:
the signal raises ``KeyboardInterrupt`` here, the worker finishes and publishes its frame and is
stopped, and only then does rclpy shut down.
"""

import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C, SIGTERM or shutdown; return the process exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    from mickey_ros.ros.node import RelocalizeNode

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
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
            node.release()  # joins the worker while the context is still valid
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
