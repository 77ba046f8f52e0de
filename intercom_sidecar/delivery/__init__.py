"""Getting planned events to Intercom: a bounded per-user FIFO queue, workers, retries. No HTTP here."""
