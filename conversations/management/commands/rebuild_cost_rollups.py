"""Rebuilds the cost dashboard's daily rollups from the ledger.

    manage.py rebuild_cost_rollups

Generations keep the rollups in step by themselves; run this after changing
TIME_ZONE (a rollup's day is a date in it), after editing the ledger with raw SQL or
QuerySet.update(), or to check them: it says how many it wrote. One transaction: the
dashboard reads the old rollups until the new ones are all there.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from conversations.costs import rollups
from conversations.models import CostLog, CostRollup


class Command(BaseCommand):
    help = "Rebuild the cost dashboard's daily rollups (CostRollup) from the ledger (CostLog)."

    def handle(self, *args, **options):
        started = time.monotonic()
        written = rollups.rebuild(CostLog, CostRollup)
        self.stdout.write(
            f"Rebuilt {written:,} rollups from {CostLog.objects.count():,} ledger rows "
            f"in {time.monotonic() - started:.1f} s."
        )
