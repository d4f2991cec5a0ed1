#!/usr/bin/env bash
# Builds the wheels that an offline GPU machine needs to run experiments/bench/gpu_suite.py.
#
# A GPU image that already has torch, lightning, timm, peft, transformers, tensorboard, safetensors, rich and pyyaml
# still lacks what the suite's DeepSpeed part and the test part import: deepspeed (an sdist on PyPI, built here into a
# pure-Python wheel; its CUDA ops compile on first use only, and the suite uses none of them), its pydantic stack and
# hjson, jsonargparse with the two packages of its `signatures` extra, and `datasets` (the instruction data module of
# the GPU tests) with the two packages the image lacks. Run this on a machine with PyPI access; copy
# the folder to the GPU machine and install it there without an index:
#
#     experiments/bench/gpu_wheels.sh .whl 3.12          # here: folder, Python version of the GPU machine
#     python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#
# The versions are the ones the project is tested with; one version of each package (pip refuses two).
set -euo pipefail
dest=${1:-.whl}
python_version=${2:-3.12}
mkdir -p "$dest"

pure=(
    jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 importlib-resources==6.5.2
    pydantic==2.13.4 annotated-types==0.7.0 typing-inspection==0.4.2 typing-extensions==4.16.0 hjson==3.1.0
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" "${pure[@]}" pydantic-core==2.46.4
python3 -m pip wheel --quiet --no-deps -w "$dest" deepspeed==0.19.8
# The test part (pytest -m gpu) collects every test module, and some import the audio/video readers and submitit at
# the top: these bring libsndfile and FFmpeg inside their wheels (PyAV is about 36 MB).
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" av==18.1.0 soundfile==0.14.0 cffi==2.0.0 pycparser==3.12 submitit==1.5.4
# The qlora part (and the QLoRA gpu test): bitsandbytes, about 43 MB with its CUDA kernels. A machine that takes at
# most 64 MiB of carried files gets it in a run of its own (gpu_suite.py --parts env qlora tests) without av.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" bitsandbytes==0.50.2
ls -1 "$dest"
