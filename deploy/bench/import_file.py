"""An import file for `passerelle import --partner caravan FILE` (after `passerelle seed`):
N actors, N actions (themes, places, parents), 2N outcomes, N/2 partnerships, 4.5N rows.
Usage: python3 deploy/bench/import_file.py FILE [N]  (N = 45000: 202,500 rows)."""
import json, sys

N = int(sys.argv[2]) if len(sys.argv) > 2 else 45000
with open(sys.argv[1],'w') as f:
    for i in range(N):
        f.write(json.dumps({"type":"actor","id":f"caravan-b-actor-{i}","kind":"ASSOCIATION","name":f"Actor {i}","visibility":"PUBLIC"})+"\n")
    for i in range(N):
        r={"type":"action","id":f"caravan-b-act-{i}","kind":"WORKSHOP","title":f"Action {i}","themes":["access-to-rights","housing"],"places":[{"name":"Grenoble","level":"COMMUNE","insee_code":"38185"}],"visibility":"PUBLIC"}
        if i%10: r["parent_action_id"]=f"caravan-b-act-{i-i%10}"
        f.write(json.dumps(r)+"\n")
    for i in range(2*N):
        f.write(json.dumps({"type":"outcome","id":f"caravan-b-out-{i}","action_id":f"caravan-b-act-{i//2}","indicator":"personnes","measure":"ACTUAL","value":i,"disaggregations":[{"dimension":"age","category":"18-25","value":1}],"visibility":"PUBLIC"})+"\n")
    for i in range(N//2):
        f.write(json.dumps({"type":"partnership","id":f"caravan-b-ps-{i}","action_id":f"caravan-b-act-{i}","name":f"P {i}","members":[{"actor_id":f"caravan-b-actor-{i}","role":"IMPLEMENTER"},{"actor_id":f"caravan-b-actor-{i+1}","role":"FUNDER"}]})+"\n")
