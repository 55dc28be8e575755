"""Locust load test in the spirit of the old service's: realistic searches and multi-turn ad conversations.

Against the local host (python -m core.devhost) or a deployed app:

    locust -f bench/locustfile.py --host http://127.0.0.1:7071 --headless --users 50 --spawn-rate 10 \
           --run-time 60s --only-summary

Set FUNCTION_KEY for a deployed app (the local host's default key is local-dev-key). Only ever point it
at 127.0.0.1 or at your own deployment.
"""

import json
import os
import random
from pathlib import Path

from locust import HttpUser, between, task

ROOT = Path(__file__).resolve().parent.parent
QUERIES = [q.strip() for q in (ROOT / "data" / "sample_queries.txt").read_text().splitlines() if q.strip()]
CONVERSATIONS = json.loads((ROOT / "bench" / "conversations.json").read_text())
KEY = os.environ.get("FUNCTION_KEY", "local-dev-key")


class ChatBackendUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.client.headers["x-functions-key"] = KEY
        self.thread = f"locust-{random.randrange(10**9)}"

    @task(8)
    def search(self) -> None:
        with self.client.post("/api/search", json={"query": random.choice(QUERIES), "top_k": 10},
                              name="/api/search", catch_response=True) as r:
            if r.status_code != 200 or not r.json().get("results"):
                r.failure(f"status {r.status_code}")

    @task(2)
    def ads(self) -> None:
        conv = random.choice(CONVERSATIONS)
        with self.client.post("/api/ads", json={"thread_name": self.thread, "conversation": conv["conversation"]},
                              name="/api/ads", catch_response=True) as r:
            if r.status_code != 200 or "ads" not in r.json():
                r.failure(f"status {r.status_code}")
