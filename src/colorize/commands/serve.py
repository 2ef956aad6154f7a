"""``colorize serve``: the web app (drop photos in a browser page, or POST /api/colorize) under uvicorn."""

from __future__ import annotations

import argparse
import copy
import sys

from colorize.batch import MODEL_ERRORS
from colorize.commands.options import add_model_options, bounded, build_colorizer


def page_url(host: str, port: int) -> str:
    """The page's address to open on this machine. 0.0.0.0 and :: (every interface) are where to listen, not
    where to connect (Windows refuses to), so loopback stands for them."""
    if host in ("", "0.0.0.0", "::"):
        host = "::1" if host == "::" else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


port = bounded(int, 1, 65535, what="the TCP port")  # --port
cache_size = bounded(float, 0, what="the cache size in MB")  # --cache-mb


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="colorize serve", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=port, default=8000, help="TCP port (default 8000)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name the server answers to besides localhost, 127.0.0.1 and [::1]; repeatable. "
                        "On loopback (the default) it answers no other name (against DNS rebinding): behind a "
                        "reverse proxy, give its public name here. With --host elsewhere: only these and loopback")
    add_model_options(p, device=False, runtime=False)  # defaults: a request may override size, temperature, saturation
    p.add_argument("--workers", type=bounded(int, 1, what="inference threads"), default=1,
                   help="inference threads (default 1)")
    p.add_argument("--queue", type=bounded(int, 0, what="the queue"), default=8,
                   help="photos that may wait beyond those running (default 8; 503 beyond)")
    p.add_argument("--max-upload-mb", type=bounded(float, 0.001, what="the largest upload"), default=25.0,
                   metavar="MB", help="largest upload (default 25 MB; 413 beyond)")
    p.add_argument("--max-pixels", type=bounded(int, 1, what="the largest image"), default=None,
                   help="largest image in pixels (default 16 million; 413 beyond)")
    p.add_argument("--cache-mb", type=cache_size, default=None, metavar="MB",
                   help="memory for the photos' kept predictions, so that re-rendering one with hints (the "
                        "page's pins) skips the network; the least recently used are forgotten first, and the "
                        "page then uploads the photo again (default 512 MB, about 100 photos of 1 megapixel)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log detail (default info: one line per request)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)

    import uvicorn

    from colorize.web import DEFAULT_CACHE_MB, DEFAULT_MAX_PIXELS, create_app, is_loopback

    if not is_loopback(args.host):
        print(f"warning: binding to {args.host}: the app has no authentication; anyone who can reach this "
              "address can use it", file=sys.stderr)
    try:
        colorizer = build_colorizer(args)
        app = create_app(colorizer, max_upload_mb=args.max_upload_mb,
                         max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, workers=args.workers,
                         queue_size=args.queue, cache_mb=DEFAULT_CACHE_MB if args.cache_mb is None else args.cache_mb,
                         allowed_hosts=args.allowed_host if is_loopback(args.host) or args.allowed_host else None)
    except MODEL_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"colorize: model {colorizer.model_name} at size {colorizer.size}; open {page_url(args.host, args.port)}")
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)  # the app's own lines beside uvicorn's, same format
    log_config["loggers"]["colorize"] = {"handlers": ["default"], "level": args.log_level.upper(), "propagate": False}
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, log_config=log_config)
    return 0
