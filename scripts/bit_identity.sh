#!/bin/bash
# Nine short runs that exercise every path a refactoring may change (tutorial, vgg-16 with a
# validation split, finetune with augmentation and EMA, an interrupted and resumed SGD run, a
# config.json replay, a fine-tune replay, TOML files for train and finetune). Run it with the
# binary before and after a change, then compare: scripts/compare_runs.py BEFORE AFTER.
# usage: scripts/bit_identity.sh BIN OUTDIR   (MNIST in data/mnist, or set MNIST)
set -euo pipefail
BIN=$1; O=$2; rm -rf $O; mkdir -p $O
export MNIST_CNN_DATA=${MNIST:-data/mnist}
D="--data ${MNIST:-data/mnist} --threads 2 --no-report --no-tensorboard"
$BIN train $D --limit 2000 --epochs 1 --seed 7 --out $O/tutorial 2>$O/tutorial.log
$BIN train $D --arch vgg-16 --limit 1000 --epochs 1 --batch-size 64 --val-split 0.1 --out $O/vgg16 2>$O/vgg16.log
$BIN finetune $D --from $O/tutorial/model.ot --augment --ema 0.99 --limit 1000 --epochs 1 --out $O/ft 2>$O/ft.log
MNIST_CNN_SIGNAL_AT_STEP=30 $BIN train $D --limit 2000 --epochs 2 --seed 3 --optimizer sgd --momentum 0.9 --nesterov --weight-decay 1e-4 --clip-grad-norm 1 --schedule cosine --out $O/resumed 2>$O/resumed1.log || true
$BIN train --resume $O/resumed --no-report --no-tensorboard 2>$O/resumed2.log
$BIN train $D --config $O/tutorial/config.json --out $O/replay 2>$O/replay.log
$BIN finetune --config $O/ft/config.json --out $O/ftreplay --no-report --no-tensorboard 2>$O/ftreplay.log
printf 'learning_rate = 2e-3\nlabel_smoothing = 0.1\noptimizer = "adamw"\nbatch_size = 64\n[data]\nlimit = 1500\nvalidation_split = 0.1\n' > $O/s.toml
$BIN train $D --recipe fast --config $O/s.toml --epochs 1.5 --schedule plateau --plateau-factor 0.5 --plateau-patience 0 --patience 3 --out $O/toml 2>$O/toml.log
printf 'learning_rate = 5e-4\nfreeze = "conv1"\n' > $O/f.toml
$BIN finetune $D --from $O/tutorial/model.ot --config $O/f.toml --limit 800 --epochs 1 --out $O/fttoml 2>$O/fttoml.log
echo done
