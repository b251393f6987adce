# Hub models and datasets (opd.hub; the download rules are in download.smk): each resolved to a commit once, on the machine that runs
# snakemake, and kept in the lock file; local rules download those commits into the cache;
# every other job runs with the hub offline and reads the snapshot directories.
import shlex

from huggingface_hub.constants import HF_HUB_CACHE

from opd.hub import (  # noqa: E402
    HubError,
    HubRef,
    pin,
    read_lock,
    record_path,
    remote_commit,
    repo_of,
    snapshot_dir,
    study_refs,
    unresolved_message,
    write_lock,
)

HUB_CACHE = os.path.abspath(os.path.expanduser(config["hub"]["cache"] or HF_HUB_CACHE))
HUB_REFS = study_refs(config)
HUB_OFFLINE_HERE = os.environ.get("HF_HUB_OFFLINE", "0")  # whether the main process may ask the hub
UNRESOLVED = "unresolved"  # a dry run's stand-in for a commit the hub could not be asked for

# every job's shell: no hub access, and this run's cache; the download rules restore the
# user's own setting from OPD_HUB_OFFLINE_OUTSIDE
shell.prefix("set -euo pipefail; export OPD_HUB_OFFLINE_OUTSIDE=${{HF_HUB_OFFLINE:-0}} HF_HUB_OFFLINE=1 "
             f"HF_DATASETS_OFFLINE=1 HF_HUB_CACHE={shlex.quote(HUB_CACHE)}; ")

_HUB = {}


def hub_commits():
    """{ref: commit} of the study. The main process asks the hub for refs the lock lacks and,
    before the first job, writes them to the lock (a dry run says it would); jobs read the
    lock alone. While the Snakefile is parsed (no executor yet) nothing is said or written."""
    if "commits" not in _HUB:
        lock_path = config["hub"]["lock"]
        try:
            lock = read_lock(lock_path)
        except HubError as e:
            raise WorkflowError(f"config.hub.lock: {e}") from None
        online = workflow.is_main_process and HUB_OFFLINE_HERE != "1" and HUB_REFS
        commits, new_lock, missing = pin(HUB_REFS, lock, remote_commit if online else None)
        _HUB.update(commits=commits, missing=missing, lock=new_lock, changed=new_lock != lock and any(new_lock.values()))
    if workflow.executor_plugin is None or _HUB.get("said"):
        return _HUB["commits"]
    lock_path = config["hub"]["lock"]
    if _HUB["missing"]:
        if not workflow.dryrun:
            raise WorkflowError(unresolved_message(_HUB["missing"], lock_path))
        print(f"warning: {unresolved_message(_HUB['missing'], lock_path)}", file=sys.stderr)
    if _HUB["changed"] and workflow.dryrun:
        print(f"hub: a run would write the commits it resolved to {lock_path}", file=sys.stderr)
    elif _HUB["changed"]:
        write_lock(lock_path, _HUB["lock"])
        print(f"hub: wrote the study's commits to {lock_path} (commit this file with the config)", file=sys.stderr)
    for ref, commit in _HUB["commits"].items():  # a snapshot gone from the cache is fetched again
        record = Path(record_path(ref.kind, ref.repo, commit))
        if record.exists() and not snapshot_dir(HUB_CACHE, ref.kind, ref.repo, commit).is_dir():
            print(f"hub: {ref.kind} {ref.repo}@{commit} is no longer in {HUB_CACHE}"
                  f"{'' if workflow.dryrun else '; downloading it again'}", file=sys.stderr)
            if not workflow.dryrun and workflow.is_main_process:
                record.unlink()
    _HUB["said"] = True
    return _HUB["commits"]


def ref_commit(ref):
    return hub_commits().get(ref, UNRESOLVED)


def entry_ref(kind, entry):
    return HubRef(kind, entry["hub"], entry.get("revision") or "main")


def hub_snapshot(kind, entry):
    """The snapshot directory a job reads a hub entry from."""
    return str(snapshot_dir(HUB_CACHE, kind, entry["hub"], ref_commit(entry_ref(kind, entry))))


def hub_record(kind, entry):
    """The download rule's record of a hub entry: a job input, so the download comes first."""
    return record_path(kind, entry["hub"], ref_commit(entry_ref(kind, entry)))


def hub_records():
    """{ref: download record} of every hub repository of the study."""
    return {ref: record_path(ref.kind, ref.repo, ref_commit(ref)) for ref in HUB_REFS}


def hub_attachments():
    """{config key: download record}: results/summary.json and the tables say which commit each
    hub model and dataset of the study was."""
    return {key: record for ref, record in hub_records().items() for key in ref.keys}
