"""Upload an export folder to the Hugging Face Hub, where one is reachable."""

from __future__ import annotations

from pathlib import Path

from ..errors import CoEmoGenError


def push_to_hub(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Create (or reuse) the model repository `repo_id` and upload `folder` as it is; returns its URL.

    Offline (HF_HUB_OFFLINE=1) or unreachable, it fails with a message that points at the folder,
    which is complete and can be uploaded later with `hf upload REPO_ID FOLDER`."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    later = f"The export in '{folder}' is complete; upload it later with `hf upload {repo_id} {folder}`."
    if constants.is_offline_mode():
        raise CoEmoGenError(f"cannot push to the Hub: this machine is offline (HF_HUB_OFFLINE=1). {later}")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="CoEmoGen export")
    except (HfHubHTTPError, OSError, ValueError) as err:  # OSError covers connection errors
        raise CoEmoGenError(
            f"could not push to the Hub repository '{repo_id}': {str(err).splitlines()[0]}. {later}"
        ) from None
    return str(url)
