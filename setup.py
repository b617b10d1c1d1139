import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH_NAME = "nnunet_ext_trainers.pth"
PTH_LINE = ("import os; exec('try:\\n import nnunet_ext.environment as e\\n e.register_trainers()\\n"
            "except ImportError:\\n pass') if not os.environ.get('NNUNET_EXT_NO_AUTOREGISTER') else None\n")


class BuildWithTrainerRegistration(build_py):
    """Also place a .pth file at the root of the wheel (site-packages), so every Python process started
    after installation, including nnU-Net's own ``nnUNetv2_*`` commands, has ``nnUNet_extTrainer`` pointing
    at our shim folder (see nnunet_ext/environment.py)."""

    def run(self) -> None:
        super().run()
        with open(os.path.join(self.build_lib, PTH_NAME), "w") as f:
            f.write(PTH_LINE)


setup(
    name="nnunet_ext",
    version="0.1.0",
    description="nnU-Net v2 trainers, converters and tools for scarce, partial, weak and multimodal labels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunet_ext", "nnunet_ext.*"]),
    package_data={"nnunet_ext": ["_nnunet_shim/*.py"]},
    install_requires=[
        "nnunetv2>=2.8.1",
        "torch",
        "batchgenerators>=0.25.1",
        "batchgeneratorsv2>=0.3.2",
        "SimpleITK>=2.2.1",
        "acvl-utils>=0.2.6",
        "dynamic-network-architectures>=0.4.4",
        "numpy",
        "scipy",
        "h5py",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest", "medpy"],
        "gaze": ["pydensecrf2", "Pillow"],
        "all": ["pytest", "medpy", "pydensecrf2", "Pillow"],
    },
    cmdclass={"build_py": BuildWithTrainerRegistration},
    entry_points={"console_scripts": ["nnunet_ext = nnunet_ext.cli:console_main"]},
)
