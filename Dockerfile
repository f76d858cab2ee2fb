# syntax=docker/dockerfile:1
# DCF inference service.
#   CPU (default target): docker build -t dcf . && docker run -p 8000:8000 dcf
#   GPU: docker build --target gpu -t dcf:gpu . && docker run --gpus all -p 8000:8000 dcf:gpu
# Both serve the bundled demo model. Serve your own by mounting it and naming it in DCF_MODEL
# (every server setting is an environment variable DCF_<NAME>, see server/settings.py):
#   docker run -p 8000:8000 -v "$PWD/models:/models:ro" -e DCF_MODEL=/models/model.onnx dcf
# (In the CPU image ONNX files of either flavour run in ONNX Runtime: custom-node files with the dcf op library.)

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
# TensorRT 10.x with CUDA 12.x and Python 3.12; torch and onnxruntime-gpu below must match its CUDA.
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:25.06-py3

# ---------------------------------------------------------------- CPU: build the wheel
FROM ${PYTHON_IMAGE} AS wheel
# g++ compiles the optional CPU correlation kernel and ONNX Runtime op library into the wheel, the
# latter against ONNX Runtime's C API header (fetched and checked by tools/onnxruntime_headers.sh).
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY tools/onnxruntime_headers.sh tools/
COPY pyproject.toml setup.py README.md ./
COPY dcf/ dcf/
COPY export/ export/
COPY server/ server/
RUN include="$(tools/onnxruntime_headers.sh)" \
    && DCF_ONNXRUNTIME_INCLUDE="$include" pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------- CPU: runtime (default)
FROM ${PYTHON_IMAGE} AS cpu
ARG TORCH_VERSION=2.13.0
# The CPU build of torch (PyPI's torch pulls in CUDA); a mirror of the index: --build-arg TORCH_INDEX_URL=...
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 dcf
USER 10001
WORKDIR /home/dcf
ENV PYTHONUNBUFFERED=1 \
    DCF_HOST=0.0.0.0 \
    DCF_PORT=8000 \
    DCF_MODEL=demo \
    DCF_BACKEND=auto \
    DCF_DEVICE=cpu
EXPOSE 8000
COPY docker/healthcheck.py /usr/local/bin/dcf-healthcheck
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python3", "/usr/local/bin/dcf-healthcheck"]
CMD ["dcf", "serve"]

# ---------------------------------------------------------------- GPU: build the TensorRT plugin
FROM ${TENSORRT_IMAGE} AS plugin
WORKDIR /src
COPY trt_plugins/ trt_plugins/
RUN cmake -S trt_plugins -B /opt/dcf/build -DTENSORRT_ROOT=/usr -DCMAKE_CUDA_ARCHITECTURES="75;80;86;89;90" \
    && cmake --build /opt/dcf/build -j 4

# ---------------------------------------------------------------- GPU: runtime
FROM ${TENSORRT_IMAGE} AS gpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG ONNXRUNTIME_GPU_VERSION=1.22.0
# A venv that still sees the image's TensorRT Python package.
RUN python3 -m venv --system-site-packages /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY dcf/ dcf/
COPY export/ export/
COPY server/ server/
# onnxruntime-gpu provides the onnxruntime module with the CUDA provider; drop the CPU build.
RUN pip install --no-cache-dir . "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
    && pip uninstall -y onnxruntime \
    && pip install --no-cache-dir --force-reinstall --no-deps "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
    && useradd --create-home --uid 10001 dcf
COPY --from=plugin /opt/dcf/build/libdcf_trt_plugins.so /opt/dcf/build/libdcf_trt_plugins_preload.so /opt/dcf/build/libdcf_correlation_cuda.so /opt/dcf/lib/
USER 10001
WORKDIR /home/dcf
ENV PYTHONUNBUFFERED=1 \
    DCF_HOST=0.0.0.0 \
    DCF_PORT=8000 \
    DCF_MODEL=demo \
    DCF_BACKEND=auto \
    DCF_DEVICE=cuda \
    DCF_PLUGIN=/opt/dcf/lib/libdcf_trt_plugins.so \
    DCF_CUDA_LIBRARY=/opt/dcf/lib/libdcf_correlation_cuda.so
EXPOSE 8000
COPY docker/healthcheck.py /usr/local/bin/dcf-healthcheck
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python3", "/usr/local/bin/dcf-healthcheck"]
CMD ["dcf", "serve"]

# The default target: the CPU image.
FROM cpu
