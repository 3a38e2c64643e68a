"""Golden numbers of every registered model: its initial weights and its outputs, recorded from the
code before the models were refactored, so that a refactor that changes either is caught.

Every chapter trains from ``torch.manual_seed(...)`` then ``models.create(...)``: a model that
draws its initial weights in another order, or computes another function of them, changes every
number the book reports. Per case (:data:`CASES`) the test checks

* the state dict's keys, in order (checkpoints and the course's weights are loaded by key);
* the bytes of every tensor of the state dict, in order, after ``torch.manual_seed(0)``;
* the eval-mode output on a fixed seeded 1x3x64x64 image, with those initial weights and again
  with every weight and batch-norm statistic replaced by seeded random values (FCN's class scores
  start at zero, so only the second output says anything about its forward): the float64 sum, the
  sum of absolute values and a sum weighted by a fixed random tensor (which a shifted crop or a
  permuted map changes), to a relative 1e-5;
* the same of the randomised model on a 1x3x50x70 image, which no model's stride divides: the
  models that pad to a multiple of it and crop back (:data:`ODD_SIZE`) take that path only there.

Regenerate the constants (``python tests/models/test_model_golden.py``) only for a change that is
meant to change a model's initial weights or outputs, and rerun the book's chapters after it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math

import pytest
import torch

from segedu import models

#: (model, options) per case id: every registered model with the options the book builds it with
#: (batch norm for the VGG nets it trains from scratch, "same" padding for U-Net), then variants
#: whose forward or initialisation takes another path.
CASES: dict[str, tuple[str, dict]] = {
    **{name: (name, {}) for name in models.available()},
    "fcn8s": ("fcn8s", {"batch_norm": True}),
    "fcn16s": ("fcn16s", {"batch_norm": True}),
    "fcn32s": ("fcn32s", {"batch_norm": True}),
    "deeplabv1": ("deeplabv1", {"batch_norm": True}),
    "dilatednet": ("dilatednet", {"batch_norm": True}),
    "unet": ("unet", {"padding": "same"}),
    "fcn8s-plain": ("fcn8s", {}),
    "fcn8s-pad100": ("fcn8s", {"pad100": True, "batch_norm": True}),
    "deeplabv1-plain": ("deeplabv1", {}),
    "dilatednet-plain-frontend": ("dilatednet", {"context": False}),
    "deconvnet-pad_fc6": ("deconvnet", {"pad_fc6": True}),
    "unet-valid-bn": ("unet", {"batch_norm": True}),
    "unetpp-bn": ("unetpp", {"batch_norm": True}),
    "fcn_resnet50-aux": ("fcn_resnet50", {"aux": True}),
    "pspnet_resnet50-aux": ("pspnet_resnet50", {"aux": True}),
    "deeplabv3_resnet50-os16-multigrid-aux": ("deeplabv3_resnet50", {"output_stride": 16, "multi_grid": True,
                                                                     "aux": True}),
    "deeplabv3plus_resnet50-separable": ("deeplabv3plus_resnet50", {"separable": True}),
    "deeplabv2-depth50": ("deeplabv2", {"depth": 50}),
}
WIDTH = 0.125
#: an input size that every padding model has to pad (50 and 70 are multiples of neither 8, 16 nor 32)
ODD_SIZE = (50, 70)
#: timm draws the initial weights of deeplabv3plus_timm's encoder: its golden numbers hold for this
#: version of timm only (another version is skipped, not failed).
TIMM_VERSION = "1.0.31"

#: case id -> (sha256 of the keys, sha256 of the values; (sum, abs sum, weighted sum) of the initial
#: model's output; the same of the randomised model's output; the same at ODD_SIZE), recorded from
#: the code before the refactor of segedu.models. SegNet's and DeconvNet's key hashes were recorded
#: again when their encoder became segedu's one VGG16 (torchvision's ``features.N`` keys instead of
#: ``stages.S.convs.N``): their initial weights, in order, and every output stayed the same.
Summary = tuple[float, float, float]
GOLDEN: dict[str, tuple[str, str, Summary, Summary, Summary]] = {
    "deconvnet": ("ea613defab8ad0f0d1b330eb", "36b4583240a2eaf5c101b119",
                  (3519.541428925004, 7585.061041248497, 1776.285952068721),
                  (14846.453376599471, 21234.57962362503, 7380.657253036596),
                  (13030.553250368335, 18978.11477619561, 6442.5306057094)),
    "deeplabv1": ("64f09df50923f8e1d35d9421", "8e20b2e50b326238db020b2f",
                  (33.91127196894058, 380.4193526793174, 17.480029456780237),
                  (-64391.29643303633, 247631.8622271031, -32389.44154591573),
                  (-49357.47457116633, 217716.4030235689, -24562.738772607434)),
    "deeplabv2": ("d023539f8856ed69420403d5", "1c4f3a0e02ff15131ff094ff",
                  (-70949083.310462, 171614559.07290316, -34487267.454532236),
                  (5757136065.811798, 19023316096.551117, 2971885002.8183537),
                  (4894739355.485094, 16875219187.983366, 2381556521.3131514)),
    "deeplabv3_resnet101": ("9816d75098342f4cdc3d7d9a", "7633116c62ff7dc6a8885ec5",
                            (7687139.26809977, 15585939.915217116, 3791901.1874542483),
                            (-8342837702.150978, 16513809410.899498, -4156581886.300947),
                            (-7518436077.961906, 14817863245.822197, -3747053100.569642)),
    "deeplabv3_resnet50": ("bc4bc3bf3f14b640c92afd8b", "56b612bb7f7972677583a8ae",
                           (-10022.810207087372, 14610.766552118934, -4985.326034571889),
                           (-3533998.345227897, 18012393.320432067, -1733916.755922941),
                           (-3217580.514364311, 16050193.712247977, -1659195.2286812365)),
    "deeplabv3plus_resnet101": ("43023ae21b686781c6f4382c", "ac25613cd3574468da555660",
                                (-511820.883349536, 4616411.945787473, -241457.34460634182),
                                (-4936404254.083431, 13870345289.6497, -2493324798.4239025),
                                (-6059429583.126335, 17251389957.25672, -2980467945.0787)),
    "deeplabv3plus_resnet50": ("8e8230ec7a2c16abe92aded2", "558e737f1659a24e237ea8fc",
                               (2815.552359023073, 7749.550663944043, 1384.5618722438744),
                               (2527568.80644767, 23124646.613085672, 1172033.9222746105),
                               (2891940.517321937, 22507168.29354488, 1476006.0303753463)),
    "deeplabv3plus_timm": ("f15b0a407d6bcf2b4d76d761", "7c0ba9b396584e3b0c5e8c78",
                           (-1426.3141801655293, 5017.20218038559, -708.1078809682454),
                           (-162592.07429296337, 3410521.214952374, -71465.90370336486),
                           (-69173.4693410194, 2280668.394286585, -38421.820354520765)),
    "deeplabv3plus_xception": ("14ce01e1165846332659ceed", "64ee9ab5df8ca8e87baa2126",
                               (1067.036766877398, 4297.304952966049, 531.5525329969557),
                               (-7221448223257.984, 14222397614553.578, -3544307822598.4443),
                               (-16034596848090.96, 37906456926157.13, -7916842226765.092)),
    "dilatednet": ("f12d829cfc81260bba04377d", "c8b2ae726698eb534762e0cb",
                   (387.93118146928555, 387.93118146928555, 194.37283371359558),
                   (1533.2108419259894, 5790.299507353775, 765.6741336368998),
                   (1270.7842131129073, 4986.5770927042395, 622.7285698961757)),
    "fcdensenet103": ("9a33b670c93b31f41fa0c864", "f437a8e89de4b2a1c1f5243b",
                      (-9569.699607690749, 61750.134952281034, -4711.588059193444),
                      (-33192.1129523298, 110591.06293700694, -16344.03523549522),
                      (-29265.95038101275, 96304.40504935954, -14735.767113909082)),
    "fcdensenet56": ("723aaf3a92b002fdfd3a1a04", "373eadbdc86c7b63807b3de9",
                     (-5799.513067369806, 66418.25408119269, -2821.5454541083136),
                     (24708.85378874105, 142582.19654147222, 12786.212143239412),
                     (21515.24651090172, 123178.33032846753, 10868.002925528492)),
    "fcdensenet67": ("a4fb3a4036f898c5643db1b5", "c5a57bc0f97e6e0dd1fad530",
                     (-23629.149382597618, 61632.83334877569, -11483.22207234061),
                     (-24640.225910119712, 89133.91999367252, -12425.863821385155),
                     (-22074.77452513203, 77085.57659190893, -10989.02102498394)),
    "fcn16s": ("de0eca0429c2a11c29125ef6", "c0cb65e740064326a1f6266e",
               (0.0, 0.0, 0.0),
               (-435.1144116994037, 24926.133093624776, -226.65310687917116),
               (-291.45586120400276, 22502.24745258938, -105.13821592172826)),
    "fcn32s": ("d2edf304bf0196490ba06952", "7baaa7fc49d4e8e14c9124fb",
               (0.0, 0.0, 0.0),
               (3.526777754689874, 5034.4665764214, -1.9737501749688597),
               (4.977208315733151, 6053.10343720856, 22.847865941057055)),
    "fcn8s": ("602a9d433f8d54813caefa68", "e01c10a44171e78b71d26b9f",
              (0.0, 0.0, 0.0),
              (-267.11576873785816, 86467.77104789321, -236.54046244777442),
              (-544.4635601224145, 74943.15532238537, -362.0622979854783)),
    "fcn_resnet101": ("604272979e7ec329c8f037d4", "a069c9908c60b56b914c9e07",
                      (62775683.765242815, 115701758.39099956, 31234566.85439659),
                      (14870649521.251976, 22232780212.751045, 7378918655.207476),
                      (13943197670.33007, 20285869284.25479, 6926372889.133487)),
    "fcn_resnet50": ("ac97bb8f4c46809232062dd0", "784e53e133278db24f6454f6",
                     (-68789.41150944843, 207639.6444421989, -33984.032839977386),
                     (-6558036.010600001, 49007485.03373143, -3202397.8082849593),
                     (-6229140.764455721, 43528865.40278743, -3057410.3395637516)),
    "hrnetv2_w18": ("38787890cdf6f7ddf8263802", "d0327e27ede12d9ab04bb8ac",
                    (-19865882481.782104, 216138255584.40637, -10291309411.021753),
                    (-144654111349.3103, 267008629095.2649, -72236343174.18045),
                    (-131360671487.98569, 258984293207.68515, -64862807987.998245)),
    "hrnetv2_w48": ("38787890cdf6f7ddf8263802", "2f26896be521e20a30332ef0",
                    (21963035650.819824, 1150187472596.899, 11518726608.288414),
                    (-6927834285552.734, 26306722041707.17, -3429878750196.617),
                    (-1839995059628.9727, 19173411878246.13, -882110628225.2426)),
    "pspnet_resnet101": ("03da1f3fd24fc09575c261ea", "aa1173a0f3fb13c4f880e7ec",
                         (-5614000.044681162, 89625979.67697462, -2972912.8768021744),
                         (-5527048958.116745, 27799225934.465775, -2800446112.53129),
                         (-4901650563.217232, 24072813553.273567, -2384850303.4731846)),
    "pspnet_resnet50": ("bbf342571e6198b961ffacd1", "663d62bbae34136c73505381",
                        (-31612.950962680683, 226735.70505733992, -16199.694658478476),
                        (18416881.018861324, 35068369.2687982, 9190921.557218742),
                        (15814225.608360015, 30928606.052570753, 7917585.685172429)),
    "segnet": ("16f2ac12944e6899057314ed", "953c20fffa8aaa7b427a252c",
               (-632.5897929351777, 2453.801912283525, -314.2770874227055),
               (-1757.3206420730567, 18541.663917527185, -865.8063014539644),
               (-1708.4881823816104, 17203.343002303154, -898.760973762644)),
    "unet": ("acf8e3f70fabd6ccafc2c4c9", "2aae582886f5f69b79ed6b53",
             (-555.6961605921388, 9784.546382911503, -281.5694486274239),
             (153.46283984649926, 49072.70777184237, -58.224776334680186),
             (78.4868863101583, 42351.40839372971, 15.71518802333108)),
    "unetpp": ("7a7213bb0343576446daf1a6", "696c3763269e0f29e56a7f1b",
               (-664.3322333656251, 13384.152137760073, -354.8339116998422),
               (-4947.133708692389, 34616.56777708582, -2301.764299935473),
               (-4418.167600434972, 30357.433798136422, -2199.456080694984)),
    "fcn8s-plain": ("64cb5fcbd770d12a5a4e48a6", "ba5323cc6452a1a47a2acdc5",
                    (0.0, 0.0, 0.0),
                    (-121.15204143088704, 10232.074871309753, -67.12841032670445),
                    (-85.8650932785531, 8890.094609698193, -63.59758482566212)),
    "fcn8s-pad100": ("602a9d433f8d54813caefa68", "e01c10a44171e78b71d26b9f",
                     (0.0, 0.0, 0.0),
                     (-405.040232129395, 91789.8621211797, 24.723315802503294),
                     (-651.7526434641331, 77514.32115028985, -246.08053368491426)),
    "deeplabv1-plain": ("f2c3d4e5676bb1cf407780c4", "bfc09a24f14ec2a12740fbd6",
                        (33.91345238915983, 380.44411285689966, 17.481153851443167),
                        (-563.010180570418, 28632.86622513953, -227.09328773193084),
                        (-863.4093624298202, 24594.285830200526, -488.199622795172)),
    "dilatednet-plain-frontend": ("66934a9750d2c7f8bbc6d30f", "cb2338cd473d94a926d157bc",
                                  (-20.895796675878955, 789.95321546794, -8.53662214121532),
                                  (2470.5225042654783, 10652.276656836999, 1238.638974904174),
                                  (1627.3816613506497, 8809.354435125439, 785.283363907282)),
    "deconvnet-pad_fc6": ("ea613defab8ad0f0d1b330eb", "36b4583240a2eaf5c101b119",
                          (3519.541429680772, 7585.0610409723595, 1776.2859526711409),
                          (15424.194816211937, 22292.5881438714, 7670.236698465641),
                          (18660.883558138623, 29123.763689582585, 9249.580723275578)),
    "unet-valid-bn": ("03a613aec4b3e15105e74b62", "18417b8c1ede48fc3a2d27d3",
                      (6617.836901769042, 9197.10803438723, 3285.376750078478),
                      (101575.32393183652, 138881.07937626075, 50229.7005077916),
                      (84140.15581946634, 115492.95778287388, 41651.37712130044)),
    "unetpp-bn": ("00741815e93dd894583aab32", "eeed1ba60937c64e2da5c92c",
                  (4169.194533571601, 13896.730906739831, 2087.0337321560637),
                  (-11310.539088670164, 97419.46735668555, -6030.215114056868),
                  (-9771.720550873317, 84335.80642764363, -4759.626394762308)),
    "fcn_resnet50-aux": ("b20225290fb58051982fba8c", "364795d4a36a1d4384d4bd09",
                         (-68789.41150944843, 207639.6444421989, -33984.032839977386),
                         (-6558036.010600001, 49007485.03373143, -3202397.8082849593),
                         (-6229140.764455721, 43528865.40278743, -3057410.3395637516)),
    "pspnet_resnet50-aux": ("89895ab645aabecc34c126a5", "491111d54c012b0a08062a34",
                            (-31612.950962680683, 226735.70505733992, -16199.694658478476),
                            (18416881.018861324, 35068369.2687982, 9190921.557218742),
                            (15814225.608360015, 30928606.052570753, 7917585.685172429)),
    "deeplabv3_resnet50-os16-multigrid-aux": ("7325da3e8e8effc92ee3a19a", "d7ade1cc80b84e792a333246",
                                              (-4961.2580125208115, 8990.548175031792, -2479.1851486710284),
                                              (811466.8990987763, 10607199.326986976, 423796.6254396724),
                                              (402455.73410429247, 9572788.134852355, 146105.78450430793)),
    "deeplabv3plus_resnet50-separable": ("6c244866b0bf8126bf39c888", "46b5800ebbecf38f619cd08c",
                                         (2031.398801212461, 4319.969569603767, 1002.1131343056472),
                                         (-10971760.607864544, 35271925.98860428, -5465616.807774664),
                                         (-10227880.87437101, 33568440.35079447, -5130886.094057122)),
    "deeplabv2-depth50": ("63156ddda2c9d2dcd3e9b82d", "55de1edc8b0c639927d82459",
                          (41245.96807478974, 382474.2908942648, 19665.043224213354),
                          (3812835.2419770956, 30249766.019862533, 1895616.6269057817),
                          (795087.58913178, 25205998.38541571, 387378.31779012765)),
}

MESSAGE = ("a refactor changed {what} of {case} ({name}, {options}): this changes every chapter's numbers. "
           "Refactors must keep the initial weights (their order of drawing from the RNG included) and the "
           "forward identical; regenerate the constants only for an intended change, and rerun the book.")


def _digest(chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()[:24]


def state_dict_hashes(model: torch.nn.Module) -> tuple[str, str]:
    """(sha256 of the keys in order, sha256 of each tensor's dtype, shape and bytes in order)."""
    state = model.state_dict()
    keys = _digest(key.encode() + b"\0" for key in state)
    values = _digest(f"{v.dtype}{tuple(v.shape)}".encode() + v.detach().cpu().contiguous().numpy().tobytes()
                     for v in state.values())
    return keys, values


def randomise_(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Every floating tensor of the state dict, in order, from a seeded generator: weights
    N(0, 2 / fan_in), biases and running means N(0, 0.1^2), norm scales and variances U(0.5, 1.5)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():  # shares storage with parameters and buffers
            if not value.is_floating_point():
                continue
            if key.endswith("running_var") or (key.endswith("weight") and value.dim() == 1):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif value.dim() > 1:
                fan_in = value[0].numel()
                value.copy_(torch.randn(value.shape, generator=generator) * math.sqrt(2.0 / fan_in))
            else:
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
    return model


def output_summary(model: torch.nn.Module, size: tuple[int, int] = (64, 64)) -> Summary:
    """(sum, abs sum, weighted sum) in float64 of the eval-mode output on a seeded 1x3xHxW image."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, *size, generator=generator)
    with torch.no_grad():
        out = models.main_output(model.eval()(x)).double()
    weights = torch.rand(out.shape, generator=generator, dtype=torch.float64)
    return out.sum().item(), out.abs().sum().item(), (out * weights).sum().item()


def golden_numbers(case: str):
    name, options = CASES[case]
    torch.manual_seed(0)
    model = models.create(name, width=WIDTH, **options)
    keys, values = state_dict_hashes(model)
    initial = output_summary(model)
    randomised = output_summary(randomise_(model))
    return keys, values, initial, randomised, output_summary(model, ODD_SIZE)


def _close(found: tuple[float, ...], expected: tuple[float, ...]) -> bool:
    """Each number within 1e-5 of the output's absolute sum (a sum can cancel to near zero)."""
    scale = abs(expected[1]) + 1e-6
    return all(abs(f - e) <= 1e-5 * scale for f, e in zip(found, expected, strict=True))


def test_every_registered_model_has_golden_numbers():
    assert set(models.available()) <= {name for name, _ in CASES.values()}
    assert set(CASES) == set(GOLDEN), "record the golden numbers of a new case from the code that defines it"


@pytest.mark.parametrize("case", list(CASES))
def test_initial_weights_and_outputs_are_unchanged(case):
    name, options = CASES[case]
    if name == "deeplabv3plus_timm":
        timm = pytest.importorskip("timm", reason="the optional package timm is not installed")
        if timm.__version__ != TIMM_VERSION:
            pytest.skip(f"timm {timm.__version__} draws other initial weights than timm {TIMM_VERSION}")
    keys, values, initial, randomised, odd = golden_numbers(case)
    golden_keys, golden_values, golden_initial, golden_randomised, golden_odd = GOLDEN[case]
    assert keys == golden_keys, MESSAGE.format(what="the state-dict keys (checkpoints load by them)", case=case,
                                               name=name, options=options)
    assert values == golden_values, MESSAGE.format(what="the initial weights", case=case, name=name, options=options)
    assert _close(initial, golden_initial), MESSAGE.format(what=f"the initial output {initial}", case=case,
                                                           name=name, options=options)
    assert _close(randomised, golden_randomised), MESSAGE.format(what=f"the output {randomised} of the randomised "
                                                                 "weights", case=case, name=name, options=options)
    assert _close(odd, golden_odd), MESSAGE.format(what=f"the output {odd} at {ODD_SIZE} (padded and cropped)",
                                                   case=case, name=name, options=options)


def test_the_checks_can_fail():
    """The hashes see one changed weight and a changed draw order; the summaries a changed weight
    and a shifted output."""
    torch.manual_seed(0)
    initial = state_dict_hashes(models.create("segnet", width=WIDTH))[1]
    torch.manual_seed(0)
    torch.rand(1)  # one number drawn before the build shifts every initial weight
    assert state_dict_hashes(models.create("segnet", width=WIDTH))[1] != initial
    model = randomise_(models.create("segnet", width=WIDTH))
    keys, values = state_dict_hashes(model)
    before = output_summary(model)
    with torch.no_grad():
        model.classifier.bias[0] += 1e-3
    assert state_dict_hashes(model)[0] == keys and state_dict_hashes(model)[1] != values
    assert not _close(output_summary(model), before)
    assert not _close((before[0], before[1], before[2] + 1e-4 * before[1]), before)


if __name__ == "__main__":  # prints the constants of GOLDEN from the current code
    if importlib.util.find_spec("timm") is not None:
        import timm

        print(f"TIMM_VERSION = {timm.__version__!r}")
    torch.set_num_threads(1)
    for case in CASES:
        print(f"    {case!r}: {golden_numbers(case)!r},", flush=True)
