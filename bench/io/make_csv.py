"""make_csv.py FILE ROWS: a CSV of ROWS rows and 8 columns (integers, floats, words), the input
both contenders of `new` read."""
import random
import sys

path, rows = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
with open(path, "w") as f:
    f.write("seed,lr,batch,model,dropout,layers,dataset,weight\n")
    for i in range(rows):
        f.write(f"{i},{rng.random() * 0.1:.6g},{32 << (i % 4)},{words[i % 8]}-{i % 97},"
                f"{rng.random() / 2:.4f},{1 + i % 12},{words[(i * 3) % 8]},{rng.uniform(-5, 5):.10g}\n")
