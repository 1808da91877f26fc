"""How many SMTP connections are open, in all and per client address."""

from __future__ import annotations


class ConnectionLimits:
    """Counts open SMTP connections, in all and per client address."""

    def __init__(self, total: int, per_ip: int) -> None:
        self._total, self._per_ip = total, per_ip
        self._open = 0
        self._by_ip: dict[str, int] = {}

    def admit(self, ip: str) -> bool:
        if self._open >= self._total or self._by_ip.get(ip, 0) >= self._per_ip:
            return False
        self._open += 1
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        return True

    def release(self, ip: str) -> None:
        self._open -= 1
        left = self._by_ip.get(ip, 1) - 1
        if left:
            self._by_ip[ip] = left
        else:
            self._by_ip.pop(ip, None)
