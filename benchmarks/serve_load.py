"""Load on ``formnet serve``: many small requests, several at a time, against a real server.

    python benchmarks/serve_load.py                           # 200 requests, 8 at a time, 2 workers
    python benchmarks/serve_load.py --requests 40 --concurrency 4 --no-write    # quick look

Starts ``formnet serve`` (the command, under uvicorn) on a free loopback port with
``--workers`` processes and a queue that holds every concurrent request, warms each worker up,
then sends ``--requests`` distinct noisy photos (``--side`` pixels square, each its own seed
and file name) from ``--concurrency`` client threads (plain ``http.client``, one connection
per request). Every answer is checked: status 200, a PNG of the input's size, the download
name of its own upload, and its pixels nearer to its own input than to any other (so no
answer is lost, duplicated or given to another request); ``--verify`` of them are also
compared with the library's result (within one grey level). The resident memory of the
server and its workers is sampled every 0.2 s: after the warm-up, after the first quarter of
the requests, at its peak and at the end. Reports p50/p95/max latency and throughput, and
writes the ``<!-- serve-load:start -->`` ... ``<!-- serve-load:end -->`` block of
``docs/benchmarks.md`` (unless ``--no-write``). Exits 1 if any answer is wrong.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- serve-load:start -->", "<!-- serve-load:end -->"
SIGMA = 25


@dataclass
class Answer:
    index: int
    status: int
    seconds: float
    content_type: str = ""
    disposition: str = ""
    body: bytes = b""


def photo(index: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The clean and noisy (sigma 25, seeded by ``index``) images of one request: a colour
    gradient with ``index`` written across it in 8 vertical bands (bright: a bit set), so that
    every request's image is told apart from every other's, noise or not."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:side, 0:side] / side
    bits = (index >> np.minimum((x * 8).astype(int), 7)) & 1
    clean = np.stack([x, 1 - y, (x * y) ** 0.5], axis=2) * 120 + 20 + 100 * bits[:, :, None]
    noisy = np.clip(clean + rng.normal(0, SIGMA, clean.shape), 0, 255).round().astype(np.uint8)
    return clean.astype(np.float32), noisy


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
             for key, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                 "Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def send(port: int, index: int, data: bytes) -> Answer:
    body, content_type = multipart({"task": "denoise", "sigma": str(SIGMA)}, f"load-{index:04d}.png", data)
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", "/v1/restore", body, {"Content-Type": content_type})
        response = connection.getresponse()
        answer = Answer(index, response.status, 0.0, response.getheader("Content-Type", ""),
                        response.getheader("Content-Disposition", ""), response.read())
    finally:
        connection.close()
    answer.seconds = time.perf_counter() - started
    return answer


class MemorySampler:
    """Resident memory of a process and its children (MiB), sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def now(self) -> float:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.samples.append(self.now())

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_server(workers: int, queue: int) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-m", "formnet_cli", "serve", "--port", str(port),
                               "--workers", str(workers), "--queue", str(queue), "--device", "cpu"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"formnet serve exited:\n{server.stderr.read().decode()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v1/health")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.5)
    raise SystemExit("formnet serve did not start in 10 minutes")


def check(answers: list[Answer], inputs: list[np.ndarray], cleans: list[np.ndarray],
          verify: int) -> tuple[list[str], int]:
    """What is wrong with the answers (nothing: an empty list), and how many are right."""
    problems: list[str] = []
    wrong: set[int] = set()
    outputs: dict[int, np.ndarray] = {}
    for answer in answers:
        name = f"load-{answer.index:04d}-restored.png"
        if answer.status != 200:
            problems.append(f"request {answer.index}: status {answer.status}: {answer.body[:200]!r}")
            wrong.add(answer.index)
        elif answer.content_type != "image/png" or f'filename="{name}"' not in answer.disposition:
            problems.append(f"request {answer.index}: {answer.content_type}, {answer.disposition}")
            wrong.add(answer.index)
        else:
            outputs[answer.index] = np.asarray(Image.open(io.BytesIO(answer.body)))
    if sorted(answer.index for answer in answers) != list(range(len(inputs))):
        problems.append("answers lost or duplicated")
    stack = np.stack(cleans)
    for index, output in outputs.items():
        if output.shape != inputs[index].shape:
            problems.append(f"request {index}: shape {output.shape}, sent {inputs[index].shape}")
            wrong.add(index)
            continue
        distances = np.abs(stack - output.astype(np.float32)).mean(axis=(1, 2, 3))
        if int(distances.argmin()) != index:
            nearest = int(distances.argmin())
            problems.append(f"request {index}: its answer is nearest to request {nearest}'s clean image")
            wrong.add(index)
    from formnet_cli import api

    for index in list(outputs)[:verify]:
        expected = api.restore(inputs[index], "denoise", sigma=SIGMA, device="cpu")
        difference = int(np.abs(outputs[index].astype(int) - expected).max())
        if difference > 1:
            problems.append(f"request {index}: {difference} grey levels from the library's result")
            wrong.add(index)
    valid = len({answer.index for answer in answers} - wrong)
    return problems, valid


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(values, share)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--side", type=int, default=64, help="image side in pixels")
    parser.add_argument("--verify", type=int, default=20, help="answers compared with the library's result")
    parser.add_argument("--output", type=Path, default=DOC)
    parser.add_argument("--no-write", action="store_true", help="print the block only")
    args = parser.parse_args(argv)

    if args.requests > 256:
        parser.error("at most 256 requests (8 bits tell their images apart)")
    cleans, inputs = zip(*(photo(index, args.side) for index in range(args.requests)))
    encoded = [png(image) for image in inputs]
    server, port = start_server(args.workers, queue=args.concurrency)
    try:
        with MemorySampler(server.pid) as memory:
            with ThreadPoolExecutor(args.workers) as pool:  # warm-up: each worker's first image
                list(pool.map(lambda index: send(port, index, encoded[index]), range(args.workers * 2)))
            warm = memory.now()
            quarter: list[float] = []
            answers: list[Answer] = []
            started = time.perf_counter()

            def one(index: int) -> Answer:
                answer = send(port, index, encoded[index])
                answers.append(answer)
                if len(answers) == args.requests // 4:
                    quarter.append(memory.now())
                return answer

            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(one, range(args.requests)))
            elapsed = time.perf_counter() - started
            end = memory.now()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    problems, valid = check(answers, list(inputs), list(cleans), args.verify)
    latencies = [answer.seconds for answer in answers]
    import torch

    command = "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    quarter_memory = quarter[0] if quarter else float("nan")
    block = "\n".join([
        (f"`{command.strip()}` ({time.strftime('%Y-%m-%d')}; {os.cpu_count()} CPU cores, "
         f"{platform.machine()}, torch {torch.__version__}; `formnet serve --workers {args.workers} "
         f"--queue {args.concurrency} --device cpu` on loopback; {args.side} x {args.side} RGB PNGs, "
         f"denoise at sigma {SIGMA})"),
        "",
        ("| requests | concurrent | valid answers | p50 latency (s) | p95 latency (s) | max (s) "
         "| throughput (images/s) | memory after warm-up / after 1/4 / peak / end (MiB) |"),
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        (f"| {args.requests} | {args.concurrency} | {valid} "
         f"| {percentile(latencies, 50):.2f} | {percentile(latencies, 95):.2f} | {max(latencies):.2f} "
         f"| {args.requests / elapsed:.2f} | {warm:.0f} / {quarter_memory:.0f} / "
         f"{max(memory.samples, default=end):.0f} / {end:.0f} |"),
        "",
        (f"Checked: every answer a PNG of its input's size under its own download name, nearest to "
         f"its own clean image among all {args.requests}; {min(args.verify, len(answers))} equal to the "
         f"library's result within one grey level. Problems: {len(problems) or 'none'}."),
    ])
    print(block)
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    if not args.no_write:
        from quality import write_block

        write_block(args.output, START, END, block)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
