"""The function submitted to Dask. The scheduler unpickles every task, yet
it is a plain `dask scheduler` without revive on its path. Dask pickles by
reference whatever plain pickle can find by name, so the task is a nested
function (which plain pickle cannot name): cloudpickle then sends it by
value, and it reaches revive's code only through an import that runs on
the worker."""


def task():
    def run_build_on_worker(job: dict) -> dict:
        import importlib
        return importlib.import_module("revive.cluster.remote").build_on_worker(job)
    return run_build_on_worker
