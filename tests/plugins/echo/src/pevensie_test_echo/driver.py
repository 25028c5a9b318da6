"""The echo driver: a plain dict, no TTLs, no batch operations."""

from __future__ import annotations


class EchoDriver:
    def __init__(self, url: str | None = None, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix
        self.data: dict[str, str] = {}
        self.calls: list[str] = []

    def __repr__(self) -> str:
        return "EchoDriver()"

    def connect(self) -> None:
        self.calls.append("connect")

    def disconnect(self) -> None:
        self.calls.append("disconnect")

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        self.calls.append("set")
        self.data[f"{self.prefix}{resource_type}:{key}"] = value

    def get(self, resource_type: str, key: str) -> str | None:
        self.calls.append("get")
        return self.data.get(f"{self.prefix}{resource_type}:{key}")

    def delete(self, resource_type: str, key: str) -> None:
        self.calls.append("delete")
        self.data.pop(f"{self.prefix}{resource_type}:{key}", None)
