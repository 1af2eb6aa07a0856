"""Voice verification speed: latency for 3 s of audio, and throughput with 2 server processes.

Everything runs the way users run it: ``singleid serve`` processes
(``singleid.testing.ServerProcess``) on a temporary SQLite database, driven over
loopback gRPC with ``VerifyAudio`` (3 s of 16 kHz PCM16 speech from the VoxForge
recordings). The baseline, measured in the same run against the same server, is
``GetVoiceprint`` for the same customer: the round trip with its database read,
without the audio work. The in-process signal path (decode, silero-vad, GE2E)
on one thread is reported too.

Figures, one JSON object a line:

- VerifyAudio p50/p99 latency, 1 server process, one call at a time
  (target p50 <= 60 ms on one core);
- verifications/s with 1 and with 2 server processes, ``--concurrency`` calls in flight;
- the in-process embed path p50 on one thread, wall time and CPU time.

    python bench/voice_latency.py [--calls 200] [--duration 15] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from singleid.clients.customers import CustomersClient
from singleid.clients.profile import ProfileClient
from singleid.clients.voiceprint import VoiceprintClient
from singleid.keyring import KeyMaterial
from singleid.testing import ServerProcess
from singleid.v1 import voiceprint_pb2
from singleid.voiceprint import audio

BENCHMARK = "voice_latency"
ROOT = Path(__file__).resolve().parents[1]
PCM = voiceprint_pb2.AUDIO_ENCODING_PCM16LE
FLAC = voiceprint_pb2.AUDIO_ENCODING_FLAC


def figure(name: str, value: float, unit: str, baseline: float, **extra: Any) -> None:
    record = {"benchmark": BENCHMARK, "figure": name, "value": round(value, 3), "unit": unit,
              "baseline": round(baseline, 3),
              "ratio": round(value / baseline, 3) if baseline else None, **extra}
    print(json.dumps(record, ensure_ascii=False), flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def three_seconds(speaker_dir: Path) -> bytes:
    parts = [soundfile.read(str(p), dtype="float32")[0] for p in sorted(speaker_dir.glob("*.flac"))]
    joined = np.concatenate(parts)[: 3 * 16_000]
    return audio.encode_pcm16(joined.astype(np.float32))


def start(data_dir: Path, workers: int, keyring: str) -> ServerProcess:
    server = ServerProcess(data_dir=data_dir, workers=workers, env={
        "SINGLEID_KEYRING": "env:SINGLEID_BENCH_KEYRING", "SINGLEID_BENCH_KEYRING": keyring,
        "SINGLEID_VOICE_MAX_ATTEMPTS_PER_CUSTOMER": "1000000000",
        "SINGLEID_VOICE_MAX_ATTEMPTS_PER_CALL": "1000000000"})
    try:
        return server.start()
    except RuntimeError:
        server.kill()
        raise


def enroll(addr: str, speaker_dir: Path) -> str:
    with closing(CustomersClient(addr)) as customers:
        customers.create_product("bench", "Bench")
        customer_id = str(customers.register_customer("bench", "voice-1").customer_id)
    with ProfileClient(addr) as profile:
        profile.set_consent(customer_id, "biometrics", True, text_version="bench-1",
                            channel="bench")
    with VoiceprintClient(addr) as client:
        files = sorted(speaker_dir.glob("*.flac"))[:2]
        client.enroll_audio(customer_id, "bench-enroll", [f.read_bytes() for f in files], FLAC)
    return customer_id


def sequential(addr: str, customer_id: str, content: bytes, calls: int
               ) -> tuple[list[float], list[float]]:
    verify, baseline = [], []
    with VoiceprintClient(addr) as client:
        for i in range(calls + 10):
            started = time.perf_counter()
            client.verify_audio(customer_id, f"seq-{i}", content, PCM, 16_000)
            took = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            client.get_voiceprint(customer_id)
            base = (time.perf_counter() - started) * 1000
            if i >= 10:  # warm-up
                verify.append(took)
                baseline.append(base)
    return verify, baseline


def throughput(addr: str, customer_id: str, content: bytes, duration: float,
               concurrency: int) -> float:
    done = [0] * concurrency
    stop = time.monotonic() + duration

    def loop(slot: int) -> None:
        with VoiceprintClient(addr) as client:
            n = 0
            while time.monotonic() < stop:
                client.verify_audio(customer_id, f"tp-{slot}-{n}", content, PCM, 16_000)
                n += 1
            done[slot] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / duration


def in_process(content: bytes, calls: int) -> tuple[float, float]:
    """p50 wall time and p50 CPU time of the signal path on this thread (ms).

    The CPU time is what one core spends, whatever else the machine runs: on a
    shared machine the wall time also counts the waits for a core.
    """
    from singleid.voiceprint.backends import load_backend  # noqa: PLC0415
    from singleid.voiceprint.service import process  # noqa: PLC0415
    from singleid.voiceprint.service.types import AudioInput  # noqa: PLC0415

    encoder = load_backend("ge2e", threads=1)
    item = AudioInput(content, audio.AudioFormat(audio.Encoding.PCM16LE, 16_000))
    wall, cpu = [], []
    for i in range(calls + 5):
        started, started_cpu = time.perf_counter(), time.thread_time()
        process(encoder, item, field="audio", min_speech=1.0)
        if i >= 5:
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.thread_time() - started_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/voice")
    parser.add_argument("--speaker", default="Ara")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()
    speaker_dir = options.data / "voxforge" / options.speaker
    content = three_seconds(speaker_dir)
    keyring = KeyMaterial.generate().to_json()
    print(f"cpus={os.cpu_count()}", file=sys.stderr)
    embed_ms, embed_cpu_ms = in_process(content, 50)
    with tempfile.TemporaryDirectory(prefix="singleid-voice-bench-") as tmp:
        one = start(Path(tmp) / "one", 1, keyring)
        try:
            customer_id = enroll(one.grpc_addr, speaker_dir)
            verify, baseline = sequential(one.grpc_addr, customer_id, content, options.calls)
            single = throughput(one.grpc_addr, customer_id, content, options.duration,
                                options.concurrency)
        finally:
            one.stop()
        two = start(Path(tmp) / "two", 2, keyring)
        try:
            customer_id = enroll(two.grpc_addr, speaker_dir)
            double = throughput(two.grpc_addr, customer_id, content, options.duration,
                                options.concurrency)
        finally:
            two.stop()
    p50, p99 = percentile(verify, 50), percentile(verify, 99)
    figure("VerifyAudio 3 s, 1 process: p50 latency", p50, "ms", percentile(baseline, 50),
           target="p50 <= 60 ms", meets_target=p50 <= 60, baseline_is="GetVoiceprint")
    figure("VerifyAudio 3 s, 1 process: p99 latency", p99, "ms", percentile(baseline, 99),
           baseline_is="GetVoiceprint")
    figure("in-process decode+VAD+GE2E, 3 s, 1 thread: p50", embed_ms, "ms", p50,
           baseline_is="VerifyAudio p50")
    figure("in-process decode+VAD+GE2E, 3 s, 1 thread: p50 CPU time", embed_cpu_ms, "ms",
           embed_ms, baseline_is="the same path's wall time", load_average=os.getloadavg()[0])
    figure("VerifyAudio 3 s throughput, 2 processes", double, "verifications/s", single,
           baseline_is="1 process", concurrency=options.concurrency)


if __name__ == "__main__":
    main()
