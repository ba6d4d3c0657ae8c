#!/bin/bash
# usage: overlap.sh BUNDLE OUTDIR ; alternates A B B A A B (A = no overlap, B = --overlap)
B=$1; O=$2; mkdir -p $O
T="Memory is the treasury and guardian of all things, and speech is its most faithful messenger."
i=0
for v in A B B A A B; do
  i=$((i+1))
  extra=""; [ $v = B ] && extra="--overlap"
  echo "run $i $v load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/log.txt
  target/release/chatterbox-ort say --bundle $B --threads 2 --max-new-tokens 100 --min-new-tokens 100 --stream $extra \
     --stats "$T" -o $O/out-$i-$v.wav > $O/stats-$i-$v.json 2>> $O/err.txt
done
echo "end load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/log.txt
