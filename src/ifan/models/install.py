"""From the authors' archive (or one of its checkpoints) on disk to checked weights in the cache.

Nothing is cached before every check has passed:

1. the member is found by its file name at any depth of the zip (``IFAN.pytorch``, ``ckpt/IFAN.pytorch``),
   copied out (never extracted by the zip's own paths) and hashed;
2. it is read with ``torch.load(weights_only=True)`` and must have exactly the official layout of its
   name: the authors' key names, the shapes of the name's configuration (N, width, dual-pixel input,
   the reblurring network's iterations when it is there) and float32 tensors;
3. the converted model must pass a self-check: on the bundled example its output has the input's
   size and is finite everywhere;
4. the archive and the member must be the ones earlier installs of this cache came from (the authors
   publish no checksum, so the first install pins them).

Then the weights are written as ifan safetensors exactly as ``ifan convert`` writes them, and the
record (:mod:`ifan.models.cache`) last. Every failure is a :class:`FetchError` of one line.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path, PurePosixPath

import torch
import torch.nn.functional as F

from ifan.examples import example_path
from ifan.io import read_image
from ifan.models import cache, zoo
from ifan.models.cache import FetchError
from ifan.models.ifan import IFAN, IFANConfig, padded_side
from ifan.models.official import CheckpointError, official_key
from ifan.models.reblur import ReblurNet
from ifan.models.serialization import LoadedWeights, read_weights, save_weights
from ifan.version import __version__

MAX_MEMBER_BYTES = 4 * 2**30  # the largest official checkpoint is far smaller; a zip bomb is not read past this
CONFIG_FIELDS = ("channels", "iterations", "filter_size", "kernel_size", "res_units", "dual_pixel_input",
                 "reblur_iterations", "reblur_filter_size")


def release_of(name: str) -> zoo.Release:
    """The authors' release of ``name``; ValueError naming the names that have one."""
    release = zoo.get_spec(name).release
    if release is None:
        if zoo.MODELS[name].weights:
            raise ValueError(f"{name} ships with ifan: nothing to fetch or install")
        names = ", ".join(n for n, s in zoo.MODELS.items() if s.release)
        raise ValueError(f"the authors publish no weights for {name}; names with published weights: {names}")
    return release


def is_archive(path: Path) -> bool:
    """True for a zip of checkpoints (the authors' archive); False for one checkpoint (a ``.pytorch`` file
    is itself a zip, of ``data.pkl`` and tensors, or a legacy pickle)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    if any(n.endswith((".pytorch", ".pth", ".pt")) for n in names):
        return True
    return not any(PurePosixPath(n).name == "data.pkl" for n in names)


def find_member(zf: zipfile.ZipFile, member: str, where: str) -> zipfile.ZipInfo:
    """The entry named ``member`` at any depth (macOS resource forks ignored)."""
    hits = [i for i in zf.infolist() if not i.is_dir() and PurePosixPath(i.filename).name == member
            and "__MACOSX" not in PurePosixPath(i.filename).parts]
    if not hits:
        files = [i.filename for i in zf.infolist() if not i.is_dir()]
        raise FetchError(f"{where}: no {member} in it ({len(files)} files, e.g. {', '.join(files[:4]) or 'none'}); "
                         "not the authors' archive, or not all of it")
    if len({(i.CRC, i.file_size) for i in hits}) > 1:
        raise FetchError(f"{where}: {len(hits)} different files named {member} ({', '.join(i.filename for i in hits)})")
    return hits[0]


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> tuple[Path, str]:
    """Copy a member into a new file in ``downloads/``; its path and SHA-256."""
    if info.file_size > MAX_MEMBER_BYTES:
        raise FetchError(f"{where}: the zip says it is {info.file_size} bytes; refused (more than "
                         f"{MAX_MEMBER_BYTES} bytes is no IFAN checkpoint)")
    folder = cache.downloads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{os.getpid()}-{time.monotonic_ns()}-{PurePosixPath(info.filename).name}"
    digest, size = hashlib.sha256(), 0
    try:
        with zf.open(info) as src, open(tmp, "xb") as dst:
            while block := src.read(2**20):
                size += len(block)
                if size > info.file_size:
                    raise FetchError(f"{where}: longer than the zip says; refused")
                digest.update(block)
                dst.write(block)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:  # a bad CRC, truncated or corrupt data
        tmp.unlink(missing_ok=True)
        raise FetchError(f"{where}: damaged in the archive ({err})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def check_layout(name: str, loaded: LoadedWeights, where: str) -> IFANConfig:
    """Refuse weights that are not exactly the authors' ``name``: their key layout, the shapes of the
    name's configuration, float32. Returns that configuration."""
    expected = zoo.get_spec(name).release_config
    if not loaded.official_layout:
        raise FetchError(f"{where}: not in the authors' key layout ('module.Network.*'); not their {name} checkpoint")
    found = loaded.config if loaded.reblur else replace(loaded.config, reblur_iterations=expected.reblur_iterations)
    if found != expected:
        diffs = ", ".join(f"{f} {getattr(found, f)} (expected {getattr(expected, f)})" for f in CONFIG_FIELDS
                          if getattr(found, f) != getattr(expected, f))
        raise FetchError(f"{where}: its shapes are not those of the authors' {name}: {diffs}")
    with torch.device("meta"):
        network = IFAN(expected).state_dict()
        reblur = ReblurNet(expected).state_dict() if loaded.reblur else None
    try:
        loaded.check(network, reblur, Path(where))
    except CheckpointError as err:
        raise FetchError(str(err)) from None
    tensors = [(official_key(k), v) for k, v in loaded.network.items()]
    tensors += [(official_key(k, reblur=True), v) for k, v in loaded.reblur.items()]
    wrong = [f"{k} {v.dtype}" for k, v in tensors if v.dtype != torch.float32]
    if wrong:
        raise FetchError(f"{where}: {len(wrong)} tensors are not float32 as the authors' are, e.g. {wrong[:3]}")
    return expected


def self_check(model: IFAN, where: str) -> None:
    """Run ``model`` on the bundled example (float32, padded by reflection to a multiple of 8); refuse an
    output of the wrong size or with a value that is not finite."""
    x = torch.from_numpy(read_image(example_path()).rgb).permute(2, 0, 1)[None].contiguous()
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, padded_side(w) - w, 0, padded_side(h) - h), mode="reflect")
    views = (padded, padded) if model.config.dual_pixel_input else (None, None)
    with torch.inference_mode():
        out = model(padded, *views).image[..., :h, :w]
    if out.shape != x.shape:
        raise FetchError(f"{where}: self-check failed: output {tuple(out.shape)} for an input {tuple(x.shape)}")
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise FetchError(f"{where}: self-check failed: {bad} of {out.numel()} output values on the bundled example "
                         "are not finite")


def _check_pins(name: str, release: zoo.Release, archive_sha: str | None, member_sha: str) -> None:
    """Refuse an archive or member that differs from the one earlier installs came from."""
    for record in cache.records():
        archive = record.get("archive") or {}
        when = record.get("installed", "earlier")
        if archive_sha and archive.get("name") == release.archive and archive.get("sha256") not in (None, archive_sha):
            raise FetchError(
                f"this {release.archive} (SHA-256 {archive_sha[:16]}...) differs from the one {record['name']} was "
                f"installed from ({when}, SHA-256 {archive['sha256'][:16]}...); refused, as the authors publish no "
                f"checksum. If they released a new one, remove the weights installed from the old one first "
                f"(`ifan weights remove {record['name']}`)")
        if record.get("name") == name and record.get("member", {}).get("sha256") not in (None, member_sha):
            raise FetchError(f"this {release.member} (SHA-256 {member_sha[:16]}...) differs from the installed one "
                             f"({when}); refused. To replace it, `ifan weights remove {name}` first")


def install_checkpoint(name: str, checkpoint: Path, member_sha: str, where: str, source: str,
                       archive: dict | None = None, tell: cache.Say | None = None) -> Path:
    """Check ``checkpoint`` (the authors' ``name``) and write it to the cache with its record; its path.

    Args:
        where: how messages name the checkpoint (``checkpoints.zip:ckpt/IFAN.pytorch``).
        source: the URL or file it came from (recorded).
        archive: ``{"name", "sha256", "bytes"}`` of the archive it came out of, if any.
        tell: where to say what is being checked.
    """
    release = release_of(name)
    _check_pins(name, release, archive and archive["sha256"], member_sha)
    try:
        loaded = read_weights(checkpoint)
    except CheckpointError as err:
        raise FetchError(str(err).replace(str(checkpoint), where)) from None
    config = check_layout(name, loaded, where)
    if tell is not None:
        tell(f"{where}: the authors' {name} layout; running a self-check on the bundled example")
    model = IFAN(config)
    model.load_state_dict(loaded.network)
    self_check(model.eval(), where)
    path = save_weights(cache.weights_file(name), config, loaded.network, loaded.reblur, model_name=name,
                        source=source, converted_from=PurePosixPath(where.rpartition(":")[2] or where).name,
                        licence=release.licence, origin=release.origin)
    record = {
        "format": cache.RECORD_FORMAT, "name": name, "file": path.name, "sha256": cache.sha256_file(path),
        "bytes": path.stat().st_size, "source": source, "member": {"path": where, "sha256": member_sha},
        "archive": archive, "licence": release.licence, "origin": release.origin, "config": config.to_dict(),
        "installed": time.strftime("%Y-%m-%d %H:%M:%S %z"), "ifan_version": __version__,
    }
    cache.write_record(name, record)
    return path


def install_from_archive(name: str, archive: Path, source: str, archive_sha: str | None = None,
                         tell: cache.Say | None = None) -> Path:
    """Install ``name`` from the authors' archive on disk (its member found at any depth)."""
    release = release_of(name)
    label = release.archive if source.startswith(("http://", "https://")) else str(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise FetchError(f"{label} is not a readable zip archive ({err}): damaged or truncated") from None
    with zf:
        info = find_member(zf, release.member, label)
        where = f"{label}:{info.filename}"
        member, member_sha = _copy_member(zf, info, where)
    try:
        digest = archive_sha or cache.sha256_file(archive)
        meta = {"name": release.archive, "sha256": digest, "bytes": archive.stat().st_size}
        return install_checkpoint(name, member, member_sha, where, source, meta, tell)
    finally:
        member.unlink(missing_ok=True)


def install_file(name: str, file: Path, tell: cache.Say | None = None) -> Path:
    """Install ``name`` from a file the user downloaded: the authors' archive, or the one checkpoint."""
    source = str(file.resolve())
    if is_archive(file):
        return install_from_archive(name, file, source, tell=tell)
    return install_checkpoint(name, file, cache.sha256_file(file), str(file), source, tell=tell)
