"""The engine's Python packages inside Slicer: which are missing, and installing them.

torch comes through the PyTorch extension (``PyTorchUtils``, which picks the build for the GPU), the
rest with pip, each only after the user agrees. Used by the module's logic; ``slicer.util`` (dialogs,
pip) is imported when called, so this module imports on the ``slicer-core`` wheel too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

__all__ = ["ENGINE_MODULES", "missingDependencies", "installDependencies"]

ENGINE_MODULES = ("torch", "monai", "SimpleITK", "numpy", "scipy")


def _tr(text: str) -> str:
    """Slicer's translation of ``text`` where there is one."""
    try:
        from slicer.i18n import tr
    except ImportError:
        return text
    return tr(text)


def missingDependencies() -> list[str]:
    """The engine's modules that cannot be imported (packages installed since start-up count)."""
    importlib.invalidate_caches()
    missing = [name for name in ENGINE_MODULES if importlib.util.find_spec(name) is None]
    if importlib.util.find_spec("semiseg") is None:
        missing.append("semiseg (the engine, installed with this extension)")
    return missing


def installDependencies(requirementsPath: str, askConfirmation: bool = True) -> None:
    """torch through the PyTorch extension, the rest of ``requirementsPath`` with pip, each only after the user agrees.

    Raises:
        RuntimeError: no PyTorch extension, PyTorch not installed, or the user cancelled.
    """
    import slicer

    if importlib.util.find_spec("torch") is None:
        try:
            torchLogic = slicer.util.getModuleLogic("PyTorchUtils")
        except (AttributeError, RuntimeError):  # no PyTorch extension, or a Slicer without getModuleLogic
            torchLogic = None
        if torchLogic is None:
            try:
                import PyTorchUtils
            except ImportError:
                raise RuntimeError(_tr("Install the 'PyTorch' extension from the Extensions Manager, restart "
                                       "Slicer and try again.")) from None
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=">=2.1") is None:
            raise RuntimeError(_tr("PyTorch was not installed."))
    packaging = _slicerPackaging()
    if packaging is not None:  # Slicer >= 5.12
        requirements = packaging.load_requirements(requirementsPath)
        packaging.pip_ensure(requirements, requester="SemiSegSlicer", prompt_install=askConfirmation)
        return
    with open(requirementsPath, encoding="utf-8") as f:  # Slicer 5.10
        lines = [line.split("#")[0].strip() for line in f]
    missing = [line for line in lines if line and not _requirementMet(line)]
    if not missing:
        return
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _tr("SemiSegSlicer needs these Python packages:\n{packages}\nInstall them now?").format(
                packages="\n".join(missing))):
        raise RuntimeError(_tr("Installation of the dependencies was cancelled."))
    slicer.util.pip_install(missing)


def _slicerPackaging():
    """``slicer.packaging`` (Slicer >= 5.12), or None on 5.10.

    ``import slicer`` does not import this submodule, so ``slicer.packaging`` is not there until it is
    imported by name.
    """
    try:
        import slicer.packaging as packaging
    except ImportError:
        return None
    return packaging if hasattr(packaging, "pip_ensure") else None


def _requirementMet(line: str) -> bool:
    try:
        from packaging.requirements import Requirement
        requirement = Requirement(line)
        return importlib.metadata.version(requirement.name) in requirement.specifier
    except Exception:  # not installed, or no way to check: install it
        return False
