"""``ifan weights``: list, fetch, install, locate and remove the weights that model names load.

A thin layer over :mod:`ifan.models.hub` (how a name resolves), :mod:`ifan.models.cache` (the cache),
:mod:`ifan.models.fetch` (the download) and :mod:`ifan.models.install` (the checks); docs/weights.md.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  ifan weights list
  ifan weights fetch ifan                      # the paper's model (the authors' weights, AGPL-3.0)
  ifan weights fetch ifan ifan-dual --url https://mirror.example/checkpoints.zip
  ifan weights install ifan ~/Downloads/checkpoints.zip    # on a machine without network
  ifan weights path ifan
  ifan weights remove ifan

The cache is $IFAN_HOME, else ~/.cache/ifan (the platform's user cache folder); IFAN_OFFLINE=1 forbids
any download."""


def arguments(p: argparse.ArgumentParser) -> None:
    from ifan.models.fetch import DEFAULT_RETRIES, DEFAULT_TIMEOUT
    from ifan.models.zoo import MODELS

    p.epilog, p.formatter_class = EPILOG, argparse.RawDescriptionHelpFormatter
    published = [n for n, s in MODELS.items() if s.release]
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="every model name: installed or not, from where, size, licence")
    fetch = sub.add_parser("fetch", help="download, check and cache the authors' weights of NAMEs")
    fetch.add_argument("names", nargs="*", metavar="NAME", help=f"one or more of: {', '.join(published)}")
    fetch.add_argument("--all", action="store_true", help="every name the authors publish (one download)")
    fetch.add_argument("--url", action="append", metavar="URL",
                       help="the archive's URL instead of the authors' mirrors (an internal mirror); repeat for "
                            "more mirrors, tried in order")
    fetch.add_argument("--force", action="store_true", help="fetch again names that are installed")
    fetch.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds without data before a connection is given up (default {DEFAULT_TIMEOUT:g})")
    fetch.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                       help=f"further attempts at a mirror after a dropped connection (default {DEFAULT_RETRIES})")
    install = sub.add_parser("install", help="install NAME from a file downloaded by hand (no network)")
    install.add_argument("name", metavar="NAME", help=f"one of: {', '.join(published)}")
    install.add_argument("file", metavar="FILE", help="the authors' checkpoints.zip, or the one checkpoint "
                                                      "(e.g. IFAN.pytorch)")
    install.add_argument("--force", action="store_true", help="replace the installed weights")
    path = sub.add_parser("path", help="print the weights file that --model NAME loads (nothing is fetched)")
    path.add_argument("name", metavar="NAME")
    remove = sub.add_parser("remove", help="remove NAMEs from the cache")
    remove.add_argument("names", nargs="+", metavar="NAME")


def _size(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.1f} MB"


def _network_mb(name: str) -> str:
    """The network's tensors at float32: the least a fetched file holds."""
    import torch

    from ifan.models.ifan import IFAN
    from ifan.models.zoo import get_spec

    with torch.device("meta"):
        params = sum(p.numel() for p in IFAN(get_spec(name).config).parameters())
    return f"~{params * 4 / 1e6:.0f} MB"


def _list() -> int:
    from ifan.models import cache, hub
    from ifan.models.zoo import MODELS

    rows = [("NAME", "STATE", "SIZE", "LICENCE", "FROM")]
    for name in MODELS:
        s = hub.status(name, verify=True)
        size = _size(s.bytes) if s.bytes is not None else (_network_mb(name) if s.state == "not installed" else "")
        source = f"ifan weights fetch {name}" if s.state == "not installed" else s.source
        rows.append((name, s.state, size, s.licence or "", source))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    offline = f"; {cache.ENV_OFFLINE}=1: no downloads" if cache.offline() else ""
    print(f"\ncache: {cache.cache_dir()}{offline}. Sizes of names not installed: the network's tensors (a fetch "
          "downloads the authors' whole archive; their weights are AGPL-3.0, the shipped ifan-lite MIT).")
    return 0


def run(args: argparse.Namespace) -> int:
    from ifan.models import cache, fetch, hub
    from ifan.models.zoo import MODELS, get_spec

    if args.action == "list":
        return _list()
    if args.action == "fetch":
        names = [n for n, s in MODELS.items() if s.release] if args.all else args.names
        if not names:
            raise ValueError("name one or more models to fetch, or --all")
        for name in names:
            get_spec(name)
        for path in fetch.fetch(names, args.url, force=args.force, timeout=args.timeout, retries=args.retries):
            print(path)
        return 0
    if args.action == "install":
        print(fetch.install_local(args.name, args.file, force=args.force))
        return 0
    if args.action == "path":
        get_spec(args.name)
        path = hub.local_weights(args.name)
        if path is None:
            raise FileNotFoundError(f"{args.name} is not installed" + (
                f"; install it with {cache.how_to_get(args.name)}" if get_spec(args.name).release else
                " and no weights exist for it"))
        print(path)
        return 0
    status = 0
    for name in args.names:  # remove
        if hub.status(name).state == "shipped":
            print(f"ifan weights: {name} ships with ifan; nothing to remove", file=sys.stderr)
            status = 1
        elif cache.remove(name):
            print(f"removed {name}")
        else:
            print(f"{name} was not installed")
    return status
