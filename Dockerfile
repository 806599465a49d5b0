# vit-explain-studio for Hugging Face Spaces (Docker SDK) or any Docker host:
#   docker build -t vit-explain-studio .
#   docker run -p 8501:8501 vit-explain-studio                      # then open http://localhost:8501
#   docker run --gpus all -p 8501:8501 vit-explain-studio           # the GPU is used automatically
# A CPU-only image (no CUDA libraries, much smaller):
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t vit-explain-studio .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIT_EXPLAIN_MAX_PARAMS=400M \
    MALLOC_ARENA_MAX=2 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Spaces run the container as user 1000; give it a home for the hub cache.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# The runtime only (requirements.txt = the core library + the app and clip extras; no test tools), in its own layer
# so that a code change does not reinstall torch.
COPY requirements.txt .
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install torch torchvision --index-url "$TORCH_INDEX_URL"; fi \
    && pip install -r requirements.txt

# The package itself (its dependencies are already there): the library, the `vit-explain` and `vit-explain-studio`
# commands, and the app with its pages and sample photos inside the package.
COPY --chown=user:user . .
RUN pip install --no-deps . && rm -rf build *.egg-info
USER user
ENV HOME=/home/user \
    HF_HOME=/home/user/.cache/huggingface \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

# Bake the default model's weights into the image (quick cold start, no download at the first visit).
# Offline builds skip this; the app then downloads them at first use, or reads VIT_EXPLAIN_WEIGHTS.
RUN python -c "import timm; timm.create_model('deit_tiny_patch16_224', pretrained=True)" \
    || echo "DeiT-Tiny weights not baked in (no network during the build)"

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"

CMD ["vit-explain-studio", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"]
