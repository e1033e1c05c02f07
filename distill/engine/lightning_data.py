"""The data module as Lightning takes it."""
from __future__ import annotations

import lightning as L

from distill.data.base import DataModule


class LightningData(DataModule, L.LightningDataModule):
    """:class:`~distill.data.base.DataModule` on Lightning's base: the loaders and the batch
    transfer hook are the data module's own, Lightning attaches its trainer."""
