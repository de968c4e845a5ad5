"""What a teacher call costs (from the stage's price table) and the run's request/cost budget."""

from __future__ import annotations

from typing import Any

from pocketguide.engine.errors import BudgetExceeded


def price_for(prices: dict[str, Any] | None, *models: str | None) -> Any | None:
    """The first model with a price (exact id, then without an `org/` prefix), else the '*' entry."""
    if not prices:
        return None
    for model in models:
        if not model:
            continue
        if model in prices:
            return prices[model]
        short = model.rsplit("/", 1)[-1]
        if short in prices:
            return prices[short]
    return prices.get("*")


def cost_of(prices: dict[str, Any] | None, usage: dict[str, int], *models: str | None) -> float | None:
    """USD for one answer; None when no price is known (so stats can tell 'free' from 'unknown')."""
    price = price_for(prices, *models)
    if price is None:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return round((prompt * price.input + completion * price.output) / 1_000_000, 8)


class Budget:
    """--max-requests / --max-cost for one run. Checked before every request that would be sent;
    requests already in flight finish, so cost can pass the cap by at most their price."""

    def __init__(self, max_cost: float | None = None, max_requests: int | None = None):
        self.max_cost = max_cost
        self.max_requests = max_requests
        self.requests = 0
        self.cost = 0.0

    def before_request(self) -> None:
        if self.max_requests is not None and self.requests >= self.max_requests:
            raise BudgetExceeded(
                f"request budget reached: {self.requests} requests sent (--max-requests {self.max_requests}); "
                f"finished records are kept — rerun with a higher --max-requests to continue")
        if self.max_cost is not None and self.cost >= self.max_cost:
            raise BudgetExceeded(
                f"cost budget reached: ${self.cost:.4f} spent (--max-cost {self.max_cost}); finished records "
                f"are kept — rerun with a higher --max-cost to continue")
        self.requests += 1

    def add_cost(self, cost: float | None) -> None:
        if cost:
            self.cost += cost

    def summary(self) -> dict[str, Any]:
        return {"requests_sent": self.requests, "cost": round(self.cost, 6), "max_requests": self.max_requests,
                "max_cost": self.max_cost}
