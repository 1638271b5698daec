"""The authors' weights by name: fetch, verify, cache, resolve (ifan.models.hub/cache/fetch/install, `ifan weights`).

Everything runs against a threaded HTTP server on 127.0.0.1 (tests/weights_server.py). The fast tests
fetch ``ifan-small``, the authors' layout at ch 8, N 4 (tests/fixtures/official_small.pytorch, made by
their code), registered for the test; the slow ones fetch the real ``ifan`` (random weights of its full
layout, made once per session) through the command line, as a user would.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from weights_server import SMALL, Server, make_zip

from ifan import load_model
from ifan.apps.cli import main as cli_main
from ifan.io import read_image, write_image
from ifan.models import cache, hub, zoo
from ifan.models.fetch import fetch, install_local
from ifan.models.cache import CacheError, FetchError
from ifan.models.ifan import IFAN, IFANConfig
from ifan.models.install import check_layout
from ifan.models.official import infer_config, split_official, to_official
from ifan.models.reblur import ReblurNet
from ifan.models.serialization import LoadedWeights

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "official_small.pytorch"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh cache, downloads allowed, and ``ifan-small`` in the registry."""
    monkeypatch.setenv("IFAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IFAN_OFFLINE", raising=False)
    monkeypatch.setitem(zoo.MODELS, SMALL.name, SMALL)
    return tmp_path / "home"


@pytest.fixture
def server():
    with Server() as s:
        yield s


def small_archive(tmp_path, folder="ckpt/", **members) -> bytes:
    members = members or {f"{folder}IFAN_small.pytorch": FIXTURE}
    return make_zip(tmp_path / "src" / "checkpoints.zip", {"ckpt/README.txt": b"checkpoints", **members}).read_bytes()


def torch_bytes(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def publish_small_at(monkeypatch, url: str) -> None:
    """``ifan-small``'s mirror: ``url``."""
    monkeypatch.setitem(zoo.MODELS, SMALL.name, replace(SMALL, release=replace(SMALL.release, urls=(url,))))


def cache_files(home: Path) -> list[str]:
    """What the cache holds besides its lock (and the empty downloads folder)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and p.name != ".lock")


def one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


# -- fetching --------------------------------------------------------------------------------------------
@pytest.mark.slow  # a server on loopback
@pytest.mark.parametrize("folder", ["", "ckpt/", "deep/er/"])
def test_fetch_finds_the_member_anywhere_checks_and_caches_it(home, server, tmp_path, folder, capsys):
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path, folder))
    path = fetch([SMALL.name], [url], progress=False)[0]
    assert path == home / "weights" / "ifan-small.safetensors"
    record = cache.read_record(SMALL.name)
    assert record["sha256"] == cache.sha256_file(path) and record["source"] == url
    assert record["member"] == {"path": f"checkpoints.zip:{folder}IFAN_small.pytorch",
                                "sha256": cache.sha256_file(FIXTURE)}
    assert record["archive"]["sha256"] == cache.sha256_file(tmp_path / "src" / "checkpoints.zip")
    model = load_model(SMALL.name)
    assert model.config == SMALL.release_config and model.config.iac_form == "official"
    assert cache_files(home) == ["weights/ifan-small.json", "weights/ifan-small.safetensors"]
    err = capsys.readouterr().err
    assert err.count("licensed AGPL-3.0") == 1 and "https://github.com/codeslake/IFAN" in err
    assert fetch([SMALL.name], [url])[0] == path and server.hits["/checkpoints.zip"] == 1  # installed: no download


@pytest.mark.slow  # a server on loopback
def test_a_name_resolves_by_fetching_it_on_first_use(home, server, tmp_path, monkeypatch):
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path))
    publish_small_at(monkeypatch, url)
    assert load_model(SMALL.name).config.channels == 8 and server.hits["/checkpoints.zip"] == 1
    assert load_model(SMALL.name) is not None and server.hits["/checkpoints.zip"] == 1


@pytest.mark.slow  # a server on loopback
def test_redirect_chain_and_a_404_on_the_first_mirror(home, server, tmp_path, capsys):
    server.serve("/files/checkpoints.zip", body=small_archive(tmp_path))
    server.serve("/a", "redirect", location=server.url("/b"))
    server.serve("/b", "redirect", location="/files/checkpoints.zip")
    fetch([SMALL.name], [server.url("/gone.zip"), server.url("/a")], progress=False)
    assert server.hits == {"/gone.zip": 1, "/a": 1, "/b": 1, "/files/checkpoints.zip": 1}  # a 404 is not retried
    assert "HTTP 404" in capsys.readouterr().err and cache.verified_path(SMALL.name) is not None


@pytest.mark.slow  # a server on loopback
def test_proxy_variables_are_honoured(home, server, tmp_path, monkeypatch):
    server.serve("/checkpoints.zip", body=small_archive(tmp_path))
    for var in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, server.url(""))
    fetch([SMALL.name], ["http://weights.invalid/checkpoints.zip"], progress=False)  # only the proxy knows it
    assert server.hits["/checkpoints.zip"] == 1


def wrong_layouts(tmp_path) -> dict[str, tuple[bytes, str]]:
    """Members named IFAN_small.pytorch that are not the authors' ifan-small, and what the refusal says."""
    state = torch.load(FIXTURE, weights_only=True)
    other_n = to_official(IFAN(IFANConfig(channels=8, iterations=3, reblur_iterations=3)).state_dict())
    half = {k: v.half() if k.endswith("conv1_1.0.weight") else v for k, v in state.items()}
    missing = {k: v for k, v in state.items() if "upconv1_2" not in k}
    ours = IFAN(SMALL.release_config).state_dict()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    return {
        "other N": (torch_bytes(other_n), "iterations 3 (expected 4)"),
        "float16": (torch_bytes(half), "not float32"),
        "missing keys": (torch_bytes(missing), "missing"),
        "our layout": (torch_bytes(ours), "not in the authors' key layout"),
        "a pickle": (torch_bytes({"x": Evil()}), "refused for safety"),
        "text": (b"not a checkpoint", "cannot be read"),
    }


@pytest.mark.slow  # a server on loopback
@pytest.mark.parametrize("case", ["other N", "float16", "missing keys", "our layout", "a pickle", "text"])
def test_a_member_of_the_wrong_layout_is_refused_and_nothing_cached(home, server, tmp_path, case):
    body, expected = wrong_layouts(tmp_path)[case]
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path, **{"ckpt/IFAN_small.pytorch": body}))
    with pytest.raises(FetchError) as err:
        fetch([SMALL.name], [url], progress=False, retries=0)
    assert expected in one_line(err.value) and url in str(err.value)
    assert cache_files(home) == []


@pytest.mark.slow  # a server on loopback
def test_failures_each_say_one_line_and_leave_nothing(home, server, tmp_path):
    archive = small_archive(tmp_path)
    flipped = bytearray(archive)
    flipped[len(archive) // 2] ^= 0xFF  # inside the member's stored bytes
    cases = {
        "/flipped.zip": (dict(body=bytes(flipped)), "damaged in the archive (Bad CRC-32"),
        "/truncated.zip": (dict(kind="truncate", body=archive), "truncated"),
        "/page.zip": (dict(kind="html", body=b"<!DOCTYPE html><html><body>Sign in</body></html>"), "HTML page"),
        "/slow.zip": (dict(kind="stall", body=archive, delay=3.0), "timed out"),
        "/other.zip": (dict(body=make_zip(tmp_path / "o.zip", {"ckpt/IFAN_8.pytorch": b"x"}).read_bytes()),
                       "no IFAN_small.pytorch in it"),
        "/junk.zip": (dict(body=b"PK\x03\x04" + b"\x00" * 200), "not a readable zip archive"),
        "/missing.zip": (dict(kind="status", status=404), "HTTP 404"),
        "/error.zip": (dict(kind="status", status=503), "HTTP 503"),
    }
    for path, (route, expected) in cases.items():
        url = server.serve(path, **route)
        start = time.monotonic()
        with pytest.raises(FetchError) as err:
            fetch([SMALL.name], [url], progress=False, timeout=0.5, retries=1)
        assert expected in one_line(err.value), (path, str(err.value))
        assert time.monotonic() - start < 12, path
        assert cache_files(home) == [], path
    assert server.hits["/missing.zip"] == 1 and server.hits["/error.zip"] == 2  # a 5xx is retried, a 404 not
    assert server.hits["/truncated.zip"] == 2  # a broken-off body is retried too
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}/checkpoints.zip"
    with pytest.raises(FetchError, match=r"cannot connect \(Connection refused\)$"):
        fetch([SMALL.name], [nobody], progress=False, retries=0)
    with pytest.raises(FetchError) as err:  # every mirror failing: one line naming each
        fetch([SMALL.name], [server.url("/page.zip"), server.url("/missing.zip")], progress=False)
    assert "page.zip: the server sent an HTML page" in one_line(err.value) and "missing.zip: HTTP 404" in str(err.value)


# -- offline, tampering, pins, local installs ---------------------------------------------------------------
@pytest.mark.slow  # a server on loopback
def test_offline_opens_no_connection_and_says_how_to_install(home, server, tmp_path, monkeypatch, capsys):
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path))
    publish_small_at(monkeypatch, url)
    monkeypatch.setenv("IFAN_OFFLINE", "1")

    def no_connection(*args):
        raise AssertionError("a connection was opened offline")

    monkeypatch.setattr(socket.socket, "connect", no_connection)
    monkeypatch.setattr(socket.socket, "connect_ex", no_connection)
    with pytest.raises(FileNotFoundError) as err:
        load_model(SMALL.name)
    assert "ifan weights install ifan-small checkpoints.zip" in one_line(err.value)
    with pytest.raises(FileNotFoundError, match="IFAN_OFFLINE=1 forbids downloading"):
        fetch([SMALL.name], [url])
    photo = write_image(tmp_path / "p.png", np.full((16, 16, 3), 0.5, np.float32))
    assert cli_main(["deblur", str(photo), "--model", "ifan-small"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ifan weights install ifan-small checkpoints.zip" in err
    assert server.hits["/checkpoints.zip"] == 0 and cache_files(home) == []
    install_local(SMALL.name, tmp_path / "src" / "checkpoints.zip")  # by hand: works offline
    assert load_model(SMALL.name).config.iterations == 4


@pytest.mark.slow  # a server on loopback
def test_a_changed_cache_file_is_refused_then_fetched_again(home, server, tmp_path, capsys):
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path))
    path = fetch([SMALL.name], [url], progress=False)[0]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError) as err:
        load_model(SMALL.name)
    assert "changed since it was installed" in one_line(err.value) and "ifan weights fetch ifan-small" in str(err.value)
    assert hub.status(SMALL.name, verify=True).state == "changed" and hub.status(SMALL.name).state == "installed"
    photo = write_image(tmp_path / "p.png", np.full((16, 16, 3), 0.5, np.float32))
    capsys.readouterr()
    assert cli_main(["deblur", str(photo), "--model", "ifan-small"]) == 1
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "p_deblurred.png").exists()
    fetch([SMALL.name], [url], progress=False)  # the changed file is not "installed": fetched again
    assert server.hits["/checkpoints.zip"] == 2 and load_model(SMALL.name).config.channels == 8
    path.unlink()
    with pytest.raises(CacheError, match="is missing"):
        load_model(SMALL.name)


@pytest.mark.slow  # a server on loopback
def test_the_first_archive_is_pinned(home, server, tmp_path):
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path))
    fetch([SMALL.name], [url], progress=False)
    other = make_zip(tmp_path / "b.zip", {"IFAN_small.pytorch": FIXTURE}, comment=b"re-released").read_bytes()
    url_b = server.serve("/b.zip", body=other)
    with pytest.raises(FetchError, match="differs from the one ifan-small was installed from"):
        fetch([SMALL.name], [url_b], force=True, progress=False)
    assert cache.verified_path(SMALL.name) is not None  # the installed weights are untouched
    assert cache.remove(SMALL.name) and cache_files(home) == []
    fetch([SMALL.name], [url_b], progress=False)  # removed first: the new archive is accepted


def test_install_by_hand_from_the_archive_or_the_checkpoint(home, tmp_path, monkeypatch):
    monkeypatch.setenv("IFAN_OFFLINE", "1")
    archive = make_zip(tmp_path / "dl" / "checkpoints.zip", {"ckpt/IFAN_small.pytorch": FIXTURE})
    first = install_local(SMALL.name, archive)
    assert cache.read_record(SMALL.name)["archive"]["sha256"] == cache.sha256_file(archive)
    assert cache.remove(SMALL.name)
    second = install_local(SMALL.name, FIXTURE)  # the one checkpoint (a .pytorch is itself a zip)
    assert cache.read_record(SMALL.name)["archive"] is None
    assert second == first and load_model(SMALL.name).config == SMALL.release_config
    with pytest.raises(FileNotFoundError, match="no such file"):
        install_local(SMALL.name, tmp_path / "nothing.zip", force=True)
    with pytest.raises(ValueError, match="ships with ifan"):
        install_local("ifan-lite", archive)


@pytest.mark.slow  # a server on loopback
def test_cache_files_follow_the_umask(home, server, tmp_path):
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path))
    old = os.umask(0o027)
    try:
        path = fetch([SMALL.name], [url], progress=False)[0]
    finally:
        os.umask(old)
    for p in (path, cache.record_file(SMALL.name), home / ".lock"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p


def test_the_cache_lock_follows_no_link(home, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"the user's file")
    home.mkdir(parents=True)
    (home / ".lock").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"), cache.cache_lock():
        pass
    assert victim.read_bytes() == b"the user's file"


# -- the registry and the resolution order ------------------------------------------------------------------
def official_layout(config: IFANConfig, reblur: bool = True) -> LoadedWeights:
    """What the reader makes of an official checkpoint of ``config`` (shapes only, on the meta device)."""
    with torch.device("meta"):
        state = to_official(IFAN(config).state_dict(), ReblurNet(config).state_dict() if reblur else None)
    network, rb = split_official(state)
    return LoadedWeights(infer_config(network, rb), network, rb, official_layout=True)


PUBLISHED = [name for name, spec in zoo.MODELS.items() if spec.release]


@pytest.mark.parametrize("name", PUBLISHED)
def test_each_published_name_takes_its_own_layout_only(name):
    spec = zoo.get_spec(name)
    assert spec.licence == "AGPL-3.0" and spec.release.origin == "https://github.com/codeslake/IFAN"
    assert check_layout(name, official_layout(spec.release_config), "x") == spec.release_config
    assert check_layout(name, official_layout(spec.release_config, reblur=False), "x") == spec.release_config
    for other in PUBLISHED:
        if zoo.get_spec(other).release_config != spec.release_config:
            with pytest.raises(FetchError, match=f"not those of the authors' {name}"):
                check_layout(name, official_layout(zoo.get_spec(other).release_config), "x")


def test_the_registry_follows_the_authors_configs():
    rbf = {name: zoo.get_spec(name).config.reblur_iterations for name in PUBLISHED}
    assert rbf == {"ifan": 17, "ifan-n8": 8, "ifan-n26": 9, "ifan-n35": 17, "ifan-n44": 17, "ifan-16bit": 17,
                   "ifan-dual": 17}  # configs/config_IFAN_*.py of codeslake/IFAN
    members = {name: zoo.get_spec(name).release.member for name in PUBLISHED}
    assert members["ifan"] == "IFAN.pytorch" and members["ifan-16bit"] == "IFAN_16bit.pytorch"
    assert zoo.get_spec("ifan-lite").release is None and zoo.get_spec("ifan-lite").licence == "MIT"


def test_resolution_order_file_then_cache_then_shipped(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = IFAN(IFANConfig(channels=2, iterations=2, reblur_iterations=2)).state_dict()
    torch.save(tiny, tmp_path / "ifan-lite")  # an existing file wins over the name
    assert load_model("ifan-lite").config.channels == 2
    (tmp_path / "ifan-lite").unlink()
    assert load_model("ifan-lite").config.channels == 16  # shipped
    with pytest.raises(FileNotFoundError, match="neither a model name"):
        load_model("ifan-nope")


# -- the command line ---------------------------------------------------------------------------------------
@pytest.mark.slow  # a server on loopback
def test_weights_command_list_fetch_path_remove(home, server, tmp_path, capsys):
    url = server.serve("/checkpoints.zip", body=small_archive(tmp_path))
    assert cli_main(["weights", "path", "ifan-small"]) == 1
    assert "ifan weights fetch ifan-small" in capsys.readouterr().err
    assert cli_main(["weights", "fetch", "ifan-small", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == str(home / "weights" / "ifan-small.safetensors")
    assert cli_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:2] == ["ifan-small", "installed"] and url in line for line in out.splitlines())
    assert any(line.split()[:3] == ["ifan", "not", "installed"] for line in out.splitlines())
    assert any(line.split()[:4] == ["ifan-lite", "shipped", "9.5", "MB"] for line in out.splitlines())
    assert cli_main(["weights", "path", "ifan-small"]) == 0
    assert capsys.readouterr().out.strip().endswith("ifan-small.safetensors")
    assert cli_main(["weights", "fetch", "ifan-lite"]) == 1 and "ships with ifan" in capsys.readouterr().err
    assert cli_main(["weights", "remove", "ifan-small", "ifan-lite"]) == 1
    assert "removed ifan-small" in capsys.readouterr().out and cache_files(home) == []


# -- as a user: the real ifan through the command line (slow) -------------------------------------------------
def ifan_cli(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ifan", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_done_when_fetch_then_deblur_offline_equals_the_converted_file(server, tmp_path, full_checkpoint):
    body = make_zip(tmp_path / "srv" / "checkpoints.zip", {"ckpt/IFAN.pytorch": full_checkpoint}).read_bytes()
    url = server.serve("/checkpoints.zip", body=body)
    server.serve("/bad.zip", kind="truncate", body=body)
    photo = write_image(tmp_path / "photo.jpg", read_image(ROOT / "examples" / "photos" / "flower.jpg").rgb[:96, :136])
    env = {k: v for k, v in os.environ.items() if k != "IFAN_OFFLINE"}
    env["IFAN_HOME"] = str(tmp_path / "home")
    fetched = ifan_cli(["weights", "fetch", "ifan", "--url", url], env, tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stderr.count("licensed AGPL-3.0") == 1
    offline = dict(env, IFAN_OFFLINE="1")
    by_name = ifan_cli(["deblur", str(photo), "--model", "ifan", "-o", "by_name", "-q"], offline, tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    converted = ifan_cli(["convert", str(full_checkpoint), "converted.safetensors"], offline, tmp_path)
    assert converted.returncode == 0, converted.stderr
    by_file = ifan_cli(["deblur", str(photo), "--model", "converted.safetensors", "-o", "by_file", "-q"], offline,
                       tmp_path)
    assert by_file.returncode == 0, by_file.stderr
    a = (tmp_path / "by_name" / "photo_deblurred.jpg").read_bytes()
    assert a == (tmp_path / "by_file" / "photo_deblurred.jpg").read_bytes()
    assert server.hits["/checkpoints.zip"] == 1
    # a corrupt archive, into a fresh cache: one line, nothing usable left
    env["IFAN_HOME"] = str(tmp_path / "home2")
    bad = ifan_cli(["weights", "fetch", "ifan", "--url", server.url("/bad.zip"), "--retries", "0"], env, tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("ifan weights: error: could not")
    assert cache_files(tmp_path / "home2") == []


@pytest.mark.slow
def test_two_processes_download_once_and_print_the_licence_once(server, tmp_path):
    body = small_archive(tmp_path)
    url = server.serve("/checkpoints.zip", body=body, delay=1.5)  # both are waiting while one downloads
    env = {k: v for k, v in os.environ.items() if k != "IFAN_OFFLINE"}
    env.update(IFAN_HOME=str(tmp_path / "home"), PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "weights_worker.py"), url]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert server.hits["/checkpoints.zip"] == 1
    assert proc.stderr.count("licensed AGPL-3.0") == 1, proc.stderr
    assert proc.stdout.count("ifan-small.safetensors") == 2


# -- the web page's menu ---------------------------------------------------------------------------------------
def test_the_web_pages_menu_offers_the_models_here_and_switches_between_them(home, tmp_path, monkeypatch):
    from ifan.apps.service import DeblurService
    from ifan.apps.serve_models import ModelMenu
    from ifan.inference import Deblurrer

    monkeypatch.setenv("IFAN_OFFLINE", "1")
    install_local(SMALL.name, FIXTURE)

    def load(name):
        return Deblurrer.from_pretrained(name, device="cpu", precision="fp32")

    menu = ModelMenu("ifan-lite", load("ifan-lite"), load)
    assert menu.choices == ["ifan-lite", "ifan-small"]  # what is here; ifan-dual would need the DP views
    assert "`ifan weights fetch ifan ifan-n8 ifan-n26 ifan-n35 ifan-n44 ifan-16bit`" in menu.note()
    service = DeblurService(menu.deblurrer, tmp_path / "work")
    rng = np.random.default_rng(0)
    photo = write_image(tmp_path / "p.png", rng.random((24, 32, 3), dtype=np.float32))
    menu.select("ifan-small", service)
    assert service.deblurrer.config.channels == 8 and menu.current == "ifan-small"
    got = read_image(service.process(photo).output).rgb
    expected = np.clip(load("ifan-small").deblur(read_image(photo).rgb), 0, 1)
    np.testing.assert_allclose(got, expected, atol=0.51 / 255)  # an 8-bit PNG of the same result
    menu.select("ifan-lite", service)
    path = cache.weights_file(SMALL.name)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")  # changed since the server started
    with pytest.raises(ValueError, match="changed since it was installed.*still using ifan-lite"):
        menu.select("ifan-small", service)
    assert service.deblurrer.config.channels == 16 and menu.current == "ifan-lite"
    with pytest.raises(ValueError, match="not one of this page's models"):
        menu.select("ifan", service)


def test_single_photo_commands_refuse_the_dual_pixel_model_before_any_fetch(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("a connection was opened"))
    photo = write_image(tmp_path / "p.png", np.full((16, 16, 3), 0.5, np.float32))
    assert cli_main(["deblur", str(photo), "--model", "ifan-dual"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dual-pixel views" in err and cache_files(home) == []
