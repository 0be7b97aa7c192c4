import time, torch, sys
nt = int(sys.argv[1]); torch.set_num_threads(nt); torch.set_flush_denormal(True)
from yolo_model import Detector, make_anchors, STRIDES
from yolo_loss import DetectionLoss
anchors, strides = make_anchors([(40,40),(20,20),(10,10)], STRIDES)
lf = DetectionLoss(6)
m = Detector(6, (16,24,48,64,96)); m.detect.init_bias(320)
opt = torch.optim.AdamW(m.parameters(), 1e-3)
bs=16
x = torch.rand(bs,3,320,320)
labels = torch.randint(0,6,(bs,5)); b = torch.rand(bs,5,2)*250; boxes=torch.cat([b, b+torch.rand(bs,5,2)*60+12],-1); mask=torch.ones(bs,5,dtype=torch.bool)
for i in range(4):
    t=time.time(); c=time.process_time()
    out = m(x)
    loss, parts = lf(out, anchors, strides, labels, boxes, mask)
    opt.zero_grad(); loss.backward(); opt.step()
    print(nt, 'wall %.2f cpu %.2f' % (time.time()-t, time.process_time()-c), flush=True)
