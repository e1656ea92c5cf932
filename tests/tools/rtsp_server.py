"""A real RTSP server for tests: serves an H.264 mp4 on 127.0.0.1 with Debian's gst-rtsp-server.

Run it with Debian's own python3 (the one python3-gi belongs to):
    /usr/bin/python3 rtsp_server.py VIDEO.mp4 PORT /mount [MAX_SECONDS]
It prints "ready" once it listens and quits by itself after MAX_SECONDS (default 180).
With RTSP_TEST_USER and RTSP_TEST_PASSWORD in the environment (never on the command line) it
requires Basic authentication with them.
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    video, port, mount = sys.argv[1], sys.argv[2], sys.argv[3]
    lifetime = int(sys.argv[4]) if len(sys.argv) > 4 else 180
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{video}" ! qtdemux ! h264parse '
                       "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    user, password = os.environ.get("RTSP_TEST_USER"), os.environ.get("RTSP_TEST_PASSWORD")
    if user and password:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        role = Gst.Structure.from_string("viewer, media.factory.access=(boolean)true, "
                                         "media.factory.construct=(boolean)true")[0]
        factory.add_role_from_structure(role)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    loop = GLib.MainLoop()
    GLib.timeout_add_seconds(lifetime, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
