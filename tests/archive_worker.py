"""Run by test_archive.py under torchrun: ``ifan deblur ARGS...``, where the rank named by
``IFAN_TEST_KILL_RANK`` kills itself (SIGKILL, as an out-of-memory killer or a lost machine would)
right after it has written ``IFAN_TEST_KILL_AFTER`` results."""

import os
import signal
import sys

from ifan.apps import pipeline
from ifan.apps.cli import main

if os.environ["RANK"] == os.environ["IFAN_TEST_KILL_RANK"]:
    real_write_job, written = pipeline.write_job, []

    def write_job(*args, **kwargs):
        report = real_write_job(*args, **kwargs)
        written.append(report)
        if len(written) == int(os.environ["IFAN_TEST_KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return report

    pipeline.write_job = write_job
sys.exit(main(sys.argv[1:]))
