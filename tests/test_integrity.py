"""Every byte an artifact loads is accounted for: listed with a sha256, inside the directory,
the manifest covered by its own digest, and (for fleets) an ed25519 signature; a run's
weights are the ones its edgetl.json records."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.core.artifact.integrity import digest
from edgetl.core.files import sha256_file
from tests.conftest import TINY_BACKBONE, export_cli, finetune_tiny, write_folder


@pytest.fixture(scope="module")
def artifact(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "cpu-fp32"
    result = export_cli(tiny_run, out, "--target", "cpu")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def art(artifact: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "art"
    shutil.copytree(artifact, copy)
    return copy


def rewrite(art: Path, change: Callable[[dict[str, Any]], None], redigest: bool = True) -> None:
    """Edit manifest.json; with `redigest`, as a hostile writer would: digest recomputed."""
    path = art / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    if redigest:
        data["digest"] = digest(data)
    path.write_text(json.dumps(data, indent=2))


def bench(art: Path, *args: str) -> Any:
    return CliRunner().invoke(
        main, ["bench", str(art), "--iterations", "3", "--rounds", "1", "--no-cold", *args]
    )


def one_line(result: Any) -> str:
    return " ".join(result.output.split())


def test_an_edited_class_name_is_refused(art: Path) -> None:
    rewrite(art, lambda d: d["classes"].__setitem__(0, "cat"), redigest=False)
    result = bench(art)
    assert result.exit_code == 2, result.output
    assert "edited after export" in one_line(result)


def test_an_edited_mean_is_refused(art: Path) -> None:
    rewrite(art, lambda d: d["preprocess"].__setitem__("mean", [0.0, 0.0, 0.0]), redigest=False)
    assert bench(art).exit_code == 2


def test_a_model_file_missing_from_files_is_not_loaded(art: Path) -> None:
    rewrite(art, lambda d: d["files"].pop("model.onnx"))
    result = bench(art)
    assert result.exit_code == 2, result.output
    assert "not listed with a sha256" in one_line(result)


@pytest.mark.parametrize("name", ["../model.onnx", "/etc/passwd", "a/../../x"])
def test_model_files_outside_the_artifact_are_refused(art: Path, name: str) -> None:
    shutil.copy(art / "model.onnx", art.parent / "model.onnx")

    def point_out(d: dict[str, Any]) -> None:
        d["model_files"] = [name]
        d["files"][name] = d["files"]["model.onnx"]

    rewrite(art, point_out)
    result = bench(art)
    assert result.exit_code == 2, result.output
    assert "not a file inside the artifact directory" in one_line(result)


def test_a_link_out_of_the_artifact_is_refused(art: Path) -> None:
    outside = art.parent / "elsewhere.onnx"
    shutil.move(art / "model.onnx", outside)
    (art / "model.onnx").symlink_to(outside)
    result = bench(art)
    assert result.exit_code == 2, result.output
    assert "link out of the artifact" in one_line(result)


def test_external_data_outside_the_artifact_is_exit_2(art: Path) -> None:
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(art / "model.onnx"))
    convert_model_to_external_data(model, location="weights.bin", size_threshold=0)
    onnx.save(model, str(art.parent / "staging.onnx"))  # writes weights.bin beside it
    proto = onnx.load(str(art.parent / "staging.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save(proto, str(art / "model.onnx"))
    sha = sha256_file(art / "model.onnx")
    rewrite(art, lambda d: d["files"]["model.onnx"].update(sha256=sha))
    result = bench(art)
    assert result.exit_code == 2, result.output
    assert "model.onnx" in result.output and "../weights.bin" in one_line(result)


def test_an_archive_is_unpacked_safely_where_a_directory_is_expected(
    artifact: Path, tmp_path: Path
) -> None:
    """`edgetl build x.tar.gz` answered "no manifest.json here": bench, predict and build
    take an archive, unpack it beside itself after checking every member, then verify it."""
    from edgetl.stages.export import archive

    shutil.copytree(artifact, tmp_path / "a")
    tarball = archive(tmp_path / "a")
    shutil.rmtree(tmp_path / "a")
    assert bench(tarball).exit_code == 0
    assert (tmp_path / "a" / "manifest.json").is_file()
    assert bench(tarball).exit_code == 0  # unpacked before: used, and verified again
    for args in (["compare", str(tarball), str(artifact)], ["bench", str(artifact),
                 "--baseline", str(tarball)]):  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and "extract it first" in one_line(result), result.output


def test_an_archive_never_answers_with_another_models_folder(
    artifact: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """After a.tar.gz was unpacked into art/, b.tar.gz (another model, also `art/`) answered
    with a's model. The folder is reused only for the archive whose manifest it holds; for
    another it is exit 2 saying why, and a's folder is left as it was."""
    from edgetl.stages.export import archive

    other = tmp_path / "other"
    assert export_cli(tiny_run, other, "--target", "cpu", "--reference-samples", "8").exit_code == 0
    tarballs = []
    for name, source in (("a", artifact), ("b", other)):
        folder = tmp_path / name / "art"
        shutil.copytree(source, folder)
        tarballs.append(archive(folder).rename(tmp_path / f"{name}.tar.gz"))
        shutil.rmtree(folder)
    assert bench(tarballs[0]).exit_code == 0
    unpacked = (tmp_path / "art" / "manifest.json").read_bytes()
    result = bench(tarballs[1])
    assert result.exit_code == 2 and "holds another artifact" in one_line(result), result.output
    assert (tmp_path / "art" / "manifest.json").read_bytes() == unpacked
    assert bench(tarballs[0]).exit_code == 0  # its own folder: reused


def hostile(tmp_path: Path, artifact: Path, add) -> Path:
    import tarfile

    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(artifact, arcname="bad")
        add(tar)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dotdot", "points outside the artifact directory"),
        ("link", "is a link or special file"),
        ("unlisted", "is not listed in its manifest"),
        ("size", "its manifest says"),
    ],
)
def test_a_hostile_archive_is_not_unpacked(
    artifact: Path, tmp_path: Path, kind: str, message: str
) -> None:
    import io
    import tarfile

    def add(tar: tarfile.TarFile) -> None:
        if kind == "link":
            link = tarfile.TarInfo("bad/model2.onnx")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
            return
        name = {"dotdot": "bad/../escape.txt", "unlisted": "bad/extra.onnx"}.get(
            kind, "bad/model.onnx"
        )
        data = b"x" * 10
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    path = hostile(tmp_path, artifact, add)
    result = bench(path)
    assert result.exit_code == 2, result.output
    assert message in one_line(result)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "escape.txt").exists()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    found = {}
    for name in ("fleet", "other"):
        result = CliRunner().invoke(main, ["keygen", str(root / name)])
        assert result.exit_code == 0, result.output
        found[name] = root / name
    assert oct((root / "fleet").stat().st_mode & 0o777) == "0o600"
    return found


@pytest.fixture(scope="module")
def signed(tiny_run: Path, keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("signed") / "cpu-fp32"
    result = export_cli(tiny_run, out, "--target", "cpu", "--sign", str(keys["fleet"]))
    assert result.exit_code == 0, result.output
    assert "signed with SHA256:" in result.output
    return out


def test_a_signed_artifact_passes_its_key_only(
    signed: Path, artifact: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    import edgetl

    fleet, other = (str(keys[n]) + ".pub" for n in ("fleet", "other"))
    assert bench(signed, "--trust", fleet).exit_code == 0
    assert bench(signed, "--trust", other, "--trust", fleet).exit_code == 0
    wrong = bench(signed, "--trust", other)
    assert wrong.exit_code == 2 and "not signed by a trusted key" in one_line(wrong)
    unsigned = bench(artifact, "--trust", fleet)
    assert unsigned.exit_code == 2 and "not signed" in one_line(unsigned)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(image)
    predicted = CliRunner().invoke(main, ["predict", str(signed), str(image), "--trust", other])
    assert predicted.exit_code == 2
    assert edgetl.load(signed, trust=fleet).predict(image)
    with pytest.raises(edgetl.core.errors.EdgetlError, match="not signed by a trusted key"):
        edgetl.load(signed, trust=[other])


def test_a_re_digested_manifest_breaks_the_signature(
    signed: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(signed, copy)
    rewrite(copy, lambda d: d["classes"].reverse())  # digest recomputed: only the key can tell
    assert bench(copy).exit_code == 0
    result = bench(copy, "--trust", str(keys["fleet"]) + ".pub")
    assert result.exit_code == 2 and "not signed by a trusted key" in one_line(result)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_openssh_keys_sign_and_verify(tiny_run: Path, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    out = tmp_path / "art"
    assert export_cli(tiny_run, out, "--target", "cpu", "--sign", str(key)).exit_code == 0
    assert bench(out, "--trust", f"{key}.pub").exit_code == 0
    bad = export_cli(tiny_run, tmp_path / "b", "--target", "cpu", "--sign", f"{key}.pub")
    assert bad.exit_code == 2 and "private key" in one_line(bad)
    assert not (tmp_path / "b").exists()


def test_a_swapped_head_is_refused(tiny_run: Path, tiny_weights: Path, tmp_path: Path) -> None:
    """Another run's head of the same shape exported silently before (test top-1 25% vs 75%)."""
    data = write_folder(tmp_path / "photos", per_class=6, seed=3)
    other = finetune_tiny(data, tmp_path / "other", tiny_weights, epochs=2, seed=5)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copy(other / "head.safetensors", run / "head.safetensors")
    result = export_cli(run, tmp_path / "art", "--target", "cpu")
    assert result.exit_code == 2, result.output
    assert "head.safetensors: its sha256 differs" in one_line(result)
    assert not (tmp_path / "art").exists()


def test_a_truncated_weights_file_is_exit_2(tiny_weights: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_weights.read_bytes()[:5000])
    result = CliRunner().invoke(
        main,
        ["finetune", "--data", str(write_folder(tmp_path / "p", per_class=4)), "--out"]
        + [str(tmp_path / "run"), "--backbone", TINY_BACKBONE, "--weights", str(cut)],
    )
    assert result.exit_code == 2, result.output
    assert "cut.safetensors" in "".join(result.output.split())


def test_manifest_digest_is_over_canonical_content(artifact: Path) -> None:
    data = json.loads((artifact / "manifest.json").read_text())
    assert data["digest"] == digest(data)
    shuffled = dict(reversed(list(data.items())))  # key order is not content
    assert digest(shuffled) == data["digest"]
    assert len(data["digest"]) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("classes", d["classes"][:-1]), "logits, its manifest lists"),
        (lambda d: d["preprocess"].__setitem__("size", 48), "its manifest's preprocessing"),
    ],
)
def test_a_model_that_does_not_match_its_manifest_is_exit_2_at_load(
    art: Path, tiny_run: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    """A class list shorter than the output (IndexError at use) or a size the graph does
    not take (ONNX Runtime's message, exit 3): checked against the graph at load."""
    rewrite(art, change)
    image = next((tiny_run.parent / "photos" / "class_1").glob("*.jpg"))
    for result in (bench(art), CliRunner().invoke(main, ["predict", str(art), str(image)])):
        assert result.exit_code == 2 and message in one_line(result), result.output


def test_a_model_onnx_runtime_cannot_load_is_exit_2_naming_it(art: Path) -> None:
    """A model file whose checksums a hostile writer redid, valid ONNX that ONNX Runtime
    refuses (here: an operator it has no kernel for) was exit 3 "a bug"; it names the
    file, exit 2."""
    import onnx

    model = art / "model.onnx"
    proto = onnx.load(str(model))
    proto.graph.node[-1].op_type = "NoSuchOperator"
    onnx.save(proto, str(model))
    sha, size = sha256_file(model), model.stat().st_size
    rewrite(art, lambda d: d["files"]["model.onnx"].update(sha256=sha, bytes=size))
    result = bench(art)
    assert result.exit_code == 2, result.output
    assert "model.onnx: ONNX Runtime cannot load this model" in one_line(result)


def test_external_data_of_a_model_file_not_named_onnx_is_checked(art: Path) -> None:
    """ONNX Runtime loads a model file whatever its extension; the external-data check
    looked only at names ending in .onnx, so `model.bin` could pull in an unlisted file."""
    import onnx

    proto = onnx.load(str(art / "model.onnx"))
    onnx.save(proto, str(art / "model.bin"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.data", size_threshold=0)  # fmt: skip
    (art / "model.onnx").unlink()
    sha, size = sha256_file(art / "model.bin"), (art / "model.bin").stat().st_size

    def swap(data: dict[str, Any]) -> None:
        del data["files"]["model.onnx"]
        data["files"]["model.bin"] = {"sha256": sha, "bytes": size}
        data["model_files"] = ["model.bin"]

    rewrite(art, swap)
    result = bench(art)
    assert result.exit_code == 2, result.output
    assert "'weights.data' is not a file listed" in one_line(result)
