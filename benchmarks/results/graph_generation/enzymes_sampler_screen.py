"""Screen DDIM sampler variants on a slice of the ENZYMES *train* split (not the test set).
usage: screen.py NAME 'json kwargs' [NAME 'json kwargs' ...]"""
import json, os, random, statistics, sys, time
import torch
torch.set_num_threads(1)
import networkx as nx
from scenegraph_diff.diffusion.edge_diffusion import EdgeDiffusionGenerator
from scenegraph_diff.diffusion.data import load_graph_dataset
from scenegraph_diff.diffusion.samplers import DDIMSampler
from scenegraph_diff.metrics import graph_mmd
model_dir = os.environ.get("MODEL", "runs/enzymes_edge_scale/final")
K = int(os.environ.get("K", "80"))
gen = EdgeDiffusionGenerator.from_pretrained(model_dir)
tr, te = load_graph_dataset("enzymes")
ref = random.Random(0).sample(tr, K)
sizes = torch.tensor([g["num_nodes"] for g in ref])
mask = torch.arange(int(sizes.max()))[None, :] < sizes[:, None]
def clus(gs):
    out = []
    for x in gs:
        G = nx.empty_graph(x["num_nodes"]); G.add_edges_from(x["edges"]); out.append(nx.average_clustering(G))
    return statistics.mean(out)
print("ref clus", round(clus(ref), 3), "edges", sum(len(g["edges"]) for g in ref) / K, flush=True)
args = sys.argv[1:]
for name, kw in zip(args[::2], args[1::2]):
    kw = json.loads(kw)
    if "window" in kw: kw["window"] = tuple(kw["window"])
    s = DDIMSampler(**kw)
    t0 = time.time()
    g = torch.Generator().manual_seed(int(os.environ.get("SEED", "0")))
    graphs, nfe = gen.generate(K, s, g, node_mask=mask, batch_size=16)
    mmd = graph_mmd(graphs, ref, ("degree", "cluster", "orbit"))
    rec = {"name": name, "kw": kw, "nfe": nfe, "K": K, "model": model_dir, "secs": round(time.time() - t0, 1),
           "mmd": {k: round(v, 4) for k, v in mmd.items()}, "clus": round(clus(graphs), 3),
           "edges": sum(len(x["edges"]) for x in graphs) / K, "load": os.getloadavg()}
    print(json.dumps(rec), flush=True)
    os.makedirs("runs/screen23", exist_ok=True)
    with open("runs/screen23/screen.jsonl", "a") as f: f.write(json.dumps(rec) + "\n")
