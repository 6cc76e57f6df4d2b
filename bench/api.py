"""The HTTP service: batch submit -> completed latency, and sustained submits/s vs a bare handler.

A real ``stagebus api`` (embedded mode: it also runs the stages) on a fresh home in a temp
directory, one key, one pipeline (whitespace, then cast of one field, then require).

- **latency**: ``--batches`` batches of ``--records`` records (1,000 by default) submitted one
  after another; each is timed from the POST to the first GET that reads ``completed``
  (polled every 10 ms): p50 and p99.
- **throughput**: 4 concurrent clients submit 100-record batches for ``--seconds``; submits/s
  counts the 202s. Baseline, in the same run with the same clients and bodies: a bare FastAPI
  app on uvicorn whose handler only parses the body (msgspec) and answers 202. Rounds alternate
  ours / bare; best of ``--repeats``. ratio = ours / bare (what auth, rate limiting, the event
  append and the batch file cost, with the stage runner working in the same process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench import print_table

DEFAULT_JSON = Path(__file__).parent / "results-api.json"
ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 4
THROUGHPUT_RECORDS = 100
CONFIG = {"processors": [{"name": "whitespace"}, {"name": "cast", "config": {"fields": {"n": "int"}}},
                         {"name": "require", "config": {"fields": ["name"]}}]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="5 latency batches, 3 s of throughput, 1 round")
    parser.add_argument("--batches", type=int, default=None, help="latency batches (default 30; quick 5)")
    parser.add_argument("--records", type=int, default=1000, help="records per latency batch")
    parser.add_argument("--seconds", type=float, default=None, help="per throughput round (default 10; quick 3)")
    parser.add_argument("--repeats", type=int, default=None, help="throughput rounds per side (default 3; quick 1)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def bare_app() -> FastAPI:
    """The baseline: FastAPI doing only the body parse."""
    app = FastAPI()
    decoder = msgspec.json.Decoder()

    @app.post("/api/v1/pipelines/{pipeline_id}/batches")
    async def submit(pipeline_id: str, request: Request) -> JSONResponse:
        records = decoder.decode(await request.body())
        return JSONResponse({"id": "bare", "status": "pending", "record_count": len(records)}, status_code=202)

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.process = subprocess.Popen([*argv, "--port", str(self.port)] if argv[-1] != "bare" else
                                            [*argv[:-1], str(self.port)], env=env, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-1000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _stagebus(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "-c", "from stagebus.cli import main; main()", *args], env=env,
                          check=True, capture_output=True, text=True).stdout


def _records(n: int, seed: int = 0) -> bytes:
    return msgspec.json.encode([{"name": f"  person {seed}-{i} ", "n": str(i)} for i in range(n)])


def measure_latency(url: str, key: str, pipeline: str, batches: int, records: int) -> list[float]:
    body = _records(records)
    latencies = []
    with httpx.Client(base_url=f"{url}/api/v1", headers={"X-API-Key": key, "content-type": "application/json"},
                      timeout=60) as client:
        for _ in range(batches):
            started = time.perf_counter()
            batch = client.post(f"/pipelines/{pipeline}/batches", content=body).json()["id"]
            while client.get(f"/pipelines/{pipeline}/batches/{batch}").json()["status"] not in ("completed", "failed"):
                time.sleep(0.01)
            latencies.append(time.perf_counter() - started)
    return latencies


def measure_throughput(url: str, key: str, pipeline: str, seconds: float) -> float:
    body = _records(THROUGHPUT_RECORDS)
    counts = [0] * CLIENTS
    start = threading.Barrier(CLIENTS + 1)
    stop_at = [0.0]

    def client_loop(i: int) -> None:
        with httpx.Client(base_url=f"{url}/api/v1", timeout=60,
                          headers={"X-API-Key": key, "content-type": "application/json"}) as client:
            start.wait()
            while time.perf_counter() < stop_at[0]:
                if client.post(f"/pipelines/{pipeline}/batches", content=body).status_code == 202:
                    counts[i] += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(int(-(-q * len(ordered) // 1)), 1) - 1]


def run(args: argparse.Namespace) -> dict[str, Any]:
    batches = args.batches or (5 if args.quick else 30)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    repeats = args.repeats or (1 if args.quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-api-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STAGEBUS_") or k.startswith("STAGEBUS_API_")},
           "STAGEBUS_HOME": str(tmp),
           "STAGEBUS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    ours_argv = [sys.executable, "-c", "from stagebus.cli import main; main()", "api"]
    bare_argv = [sys.executable, "-c", "import sys, uvicorn; from bench.api import bare_app; "
                 "uvicorn.run(bare_app(), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')", "bare"]
    try:
        key = json.loads(_stagebus(env, "keys", "create", "--owner", "BENCH", "--rate", "100000000/minute",
                                   "--format", "json"))["key"]
        ours = Server(ours_argv, env, tmp / "api.log")
        try:
            with httpx.Client(base_url=f"{ours.url}/api/v1", headers={"X-API-Key": key}) as client:
                pipeline = client.post("/pipelines", json={"name": "bench", "config": CONFIG}).json()["id"]
            latencies = measure_latency(ours.url, key, pipeline, batches, args.records)
        finally:
            ours.stop()
        ours_rates, bare_rates = [], []
        for _ in range(repeats):  # alternate, a fresh process each round: load hits both sides alike
            server = Server(ours_argv, env, tmp / "api.log")
            try:
                ours_rates.append(measure_throughput(server.url, key, pipeline, seconds))
            finally:
                server.stop()
            bare = Server(bare_argv, env, tmp / "bare.log")
            try:
                bare_rates.append(measure_throughput(bare.url, key, pipeline, seconds))
            finally:
                bare.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    best_ours, best_bare = max(ours_rates), max(bare_rates)
    figures = {"latency_batches": batches, "records_per_batch": args.records,
               "submit_to_completed_p50_ms": round(p50 * 1000, 1), "submit_to_completed_p99_ms": round(p99 * 1000, 1),
               "clients": CLIENTS, "throughput_records_per_batch": THROUGHPUT_RECORDS, "seconds_per_round": seconds,
               "repeats": repeats, "submits_per_s": round(best_ours, 1), "bare_submits_per_s": round(best_bare, 1),
               "ratio_ours_to_bare": round(best_ours / best_bare, 4)}
    print_table(f"stagebus api: {batches} batches of {args.records} records, submit -> completed",
                ["p50 ms", "p99 ms"], [[f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}"]])
    print_table(f"submits/s, {CLIENTS} clients, {THROUGHPUT_RECORDS}-record batches, best of {repeats} x {seconds:g} s",
                ["server", "submits/s", "/ bare"],
                [["stagebus api (embedded: stages run too)", f"{best_ours:.1f}", f"{best_ours / best_bare:.3f}"],
                 ["bare FastAPI (body parse only)", f"{best_bare:.1f}", "1.000"]])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
