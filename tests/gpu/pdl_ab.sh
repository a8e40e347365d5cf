# throwaway: decode with and without programmatic dependent launch, same tokens?
ids=$(seq -s, 1 512)
for ck in /tmp/pn-q15 /tmp/pn-jet2b; do
  for r in 1 2; do
    a=$(build-gpu/postnas-generate --model $ck --ids "$ids" --max-new-tokens 128 --device cuda --print-ids 2> /tmp/a.err)
    b=$(PN_NO_PDL=1 build-gpu/postnas-generate --model $ck --ids "$ids" --max-new-tokens 128 --device cuda --print-ids 2> /tmp/b.err)
    echo "PDL    $ck: $(tail -1 /tmp/a.err)"; echo "no PDL $ck: $(tail -1 /tmp/b.err)"
    [ -n "$a" ] && [ "$a" = "$b" ] && echo "same tokens" || echo "FAIL tokens differ"
  done
done
