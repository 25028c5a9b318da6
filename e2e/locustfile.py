"""The load: each simulated user asks for random items (hits and misses), without pause."""

from __future__ import annotations

import random

from catalogue import ITEMS
from locust import FastHttpUser, task


class Reader(FastHttpUser):
    @task
    def item(self) -> None:
        n = random.randrange(ITEMS)
        self.client.get(f"/items/{n}", name="/items/[n]")
