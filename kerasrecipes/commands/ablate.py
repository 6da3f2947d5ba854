"""`kerasrecipes ablate`: the bucket ablation, its table printed and its reports written."""

from kerasrecipes import ablation


def run(args, baseline, changes, shard):
    """Runs the grid of `baseline` and `changes` (parsed from `--set` and `--change`)."""
    result = ablation.ablate(
        baseline,
        changes or None,
        data=args.data,
        seeds=args.seeds,
        out_dir=args.out,
        shard=shard,
        verbose=0,
    )
    for line in result.table():
        print(line)
    if result.missing:
        print(f"{len(result.missing)} runs are not finished yet (other shards, or interrupted).")
    print(f"Saved ablation.json, ablation.md, ablation.png in {args.out}/")
