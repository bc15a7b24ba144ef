#!/usr/bin/env bash
# The demo bot: a bike shop with five skills (every kind) and a fallback. Trains what is missing, evaluates, runs its
# conversation tests (training_data/conversations.yaml and conversations_unseen.yaml), then opens the chat.
# Run from the repository root: `make demo` (or `bash scripts/demo.sh` once installed).
# `--train-only`: train what is missing, then stop (no evaluation, no chat; benchmarks/load.py uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_ONLY=0
if [ "${1:-}" = "--train-only" ]; then TRAIN_ONLY=1; fi
chatbot() { .venv/bin/chatbot "$@"; }
DATA=training_data

# The generator's prompts are built from a table with a template, as in the product-description tutorial.
if [ ! -f $DATA/product_writer.jsonl ]; then
  chatbot data template $DATA/products.csv -o $DATA/product_writer.jsonl \
    --template 'Write a description of {name}, mention {type} and {detail}' --completion description
  chatbot data split $DATA/product_writer.jsonl --valid 0.2 --seed 0
fi

train_missing() {  # NAME ARGS...: train NAME unless its adapter exists already
  local name=$1; shift
  if [ -f "adapters/$name/adapter_config.json" ]; then
    echo "$name: trained already (adapters/$name)"
  else
    chatbot train "$name" --force "$@"
  fi
}
train_missing shop-faq --kind qa --data $DATA/shop_faq_train.jsonl --valid $DATA/shop_faq_valid.jsonl \
  --description "answers questions about the Spoke & Chain bike shop: hours, prices, repairs, returns"
train_missing review-sentiment --kind classify --data $DATA/review_sentiment_train.jsonl --valid $DATA/review_sentiment_valid.jsonl \
  --description "tells whether a customer review is positive, negative or neutral"
train_missing product-writer --kind generate --data $DATA/product_writer_train.jsonl --valid $DATA/product_writer_valid.jsonl \
  --description "writes a product description from a name, a type and a detail"
train_missing small-talk --kind qa --data $DATA/small_talk_train.jsonl --valid $DATA/small_talk_valid.jsonl \
  --description "greets, says what the bot can do, says goodbye"
train_missing booking-extract --kind extract --data $DATA/booking_extract_train.jsonl --valid $DATA/booking_extract_valid.jsonl \
  --description "extracts the bike, the service and the day from a booking request"
if [ $TRAIN_ONLY = 1 ]; then exit 0; fi

for skill in shop-faq review-sentiment product-writer booking-extract small-talk; do  # held-out scores, stored in models.yaml
  chatbot eval "$skill" --data "$DATA/${skill//-/_}_valid.jsonl"
done
chatbot registry list
echo "» chatbot route eval: the router on held-out prompts of each skill"
chatbot route eval
echo
for file in conversations conversations_unseen; do
  echo "» chatbot test $DATA/$file.yaml: conversation tests (no training row repeats one of their messages)"
  chatbot test $DATA/$file.yaml || echo "(some conversations did not go as written: see above; the chat opens anyway)"
done
echo
echo "» chatbot chat  (try: hello, what can you do? · are you open on sundays? · book my trek for friday · what is the weather on mars? · /route · /quit)"
exec .venv/bin/chatbot chat
