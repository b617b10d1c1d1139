"""``nnunet_ext benchmark``: train-step time, peak memory and inference time of our trainers against stock nnU-Net,
in one run.

Steps are measured at the end of each trainer's schedule (its step counter set there before the warm-up), where
every term of every method is on (CMC adds its unlabeled pairs from 0.7 of training), or at
``--training-fraction`` of it (LTUDA's stage 1 at 0.25). A trainer of two datasets
(CMC) is also compared with the two stock trainers it replaces, one per dataset, each at its batch of that
dataset: the sum of their step times and the larger of their peaks.

For each trainer, the median wall time of ``train_step`` on batches from the real loaders (augmentation
workers running, unlabeled stream included), after warm-up steps, and the peak memory of those measured steps:
``torch.cuda.max_memory_allocated`` on CUDA, the peak resident set size of the training process on the CPU (its
high-water mark reset after the warm-up, so imports and loader start-up do not count; the augmentation workers
are processes of their own). Every trainer is measured in a fresh process, so one trainer's memory does not
carry over to the next. Stock ``nnUNetTrainer`` is measured on the same plans twice: with the plans' (labeled)
batch size, and with the batch size our trainers actually push through the network (labeled + unlabeled), so
the second ratio isolates the method's own extra work. Inference: median time of nnU-Net's sliding-window
prediction of one preprocessed case with each trainer's inference network, against the stock network, measured
in turns. Each trainer's entry also keeps the terms its last measured step logged (``last_step``: which terms,
or which stage, the figures are of). Trainer output folders go to a temporary ``nnUNet_results``.
"""
import argparse
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from typing import Callable, Dict, List, Tuple

import torch

STOCK = "nnUNetTrainer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (preprocessed)")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier")
    parser.add_argument("-tr", "--trainers", nargs="+", required=True, help="trainer class names")
    parser.add_argument("-f", "--fold", default="0")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="labeled batch size for every trainer instead of the plans' (e.g. to fit a CPU); 0: plans")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps first (at least 3)")
    parser.add_argument("--steps", type=int, default=10, help="measured steps (at least 5)")
    parser.add_argument("--training-fraction", type=float, default=1.0,
                        help="measure the steps at this fraction of each trainer's schedule (1: the end, where every "
                             "term is on; e.g. 0.25 for LTUDA's stage 1, which ends at 0.5)")
    parser.add_argument("--inference-repeats", type=int, default=5, help="timed sliding-window predictions")
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", help="write the results to this file")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_of(action: Callable[[], None], device: torch.device) -> float:
    """Wall time of one call of ``action``, with the GPU's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    action()
    synchronize(device)
    return time.perf_counter() - start


def load_trainer(name: str, plans: dict, configuration: str, fold: str, dataset_json: dict, device: torch.device,
                 batch_size: int = 0):
    """An initialized trainer of class ``name`` with its loaders started (``batch_size`` overrides the plans)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    plans = deepcopy(plans)
    if batch_size:
        plans["configurations"][configuration]["batch_size"] = batch_size
    plans["continue_training"] = False
    trainer_class = recursive_find_trainer_class_by_name(name)
    trainer = trainer_class(plans, configuration, int(fold) if fold != "all" else fold, dataset_json, device)
    trainer.initialize()
    trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    trainer.set_deep_supervision_enabled(trainer.enable_deep_supervision)
    trainer.network.train()
    return trainer


def step_seconds(trainer, warmup: int, steps: int) -> Tuple[float, float, Dict[str, float]]:
    """Median seconds of ``train_step`` (the labeled batch is fetched outside the timed region), the peak
    memory in MB of the measured steps (see the module docstring) and the terms the last step logged (they show
    which of a method's terms, or which stage, was measured)."""
    times, logged = [], {}
    for step in range(warmup + steps):
        if step == warmup:
            reset_peak_memory(trainer.device)
        batch = next(trainer.dataloader_train)
        times.append(seconds_of(lambda: logged.update(trainer.train_step(batch)), trainer.device))
    terms = {name: float(value) for name, value in logged.items()}
    return statistics.median(times[warmup:]), peak_memory_mb(trainer.device), terms


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator statistics, or the process's RSS high-water mark (Linux
    ``/proc/self/clear_refs``; elsewhere the peak since the process started remains)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif os.path.exists("/proc/self/clear_refs"):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since :func:`reset_peak_memory`, in MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    if os.path.exists("/proc/self/status"):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_trainer(name: str, plans: dict, configuration: str, fold: str, dataset_json: dict, device: torch.device,
                    batch_size: int, warmup: int, steps: int, training_fraction: float = 1.0) -> Dict:
    """Step time, peak memory and total batch of one trainer, measured at ``training_fraction`` of its schedule,
    and the (plans, dataset.json) its predictor reads; meant to run in a process of its own (see
    :func:`measured_in_fresh_process`)."""
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count())
    trainer = load_trainer(name, plans, configuration, fold, dataset_json, device, batch_size)
    try:
        if hasattr(trainer, "optimizer_steps"):
            total = trainer.num_epochs * trainer.num_iterations_per_epoch
            trainer.optimizer_steps = max(0, min(int(training_fraction * total), total - warmup - steps))
        seconds, peak, terms = step_seconds(trainer, warmup, steps)
        total_batch = trainer.batch_size + sum(s.loader.batch_size for s in getattr(trainer, "streams", {}).values())
        result = {"step_s_median": seconds, "peak_memory_mb": peak, "total_batch": total_batch, "last_step": terms,
                  "inference_setup": (deepcopy(trainer.plans_manager.plans), deepcopy(predictor_dataset_json(trainer)))}
        partner = getattr(trainer, "partner_view", None)
        if partner is not None:
            result["partner_setup"] = (deepcopy(partner.plans_manager.plans), deepcopy(partner.dataset_json))
    finally:
        shut_down(trainer)
    return result


def measured_in_fresh_process(*args) -> Dict:
    """:func:`measure_trainer` in a newly spawned process."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_trainer, *args).result()


def inference_seconds(inference_setups: Dict[str, Tuple[dict, dict]], configuration: str, case: torch.Tensor,
                      repeats: int, device: torch.device) -> Dict[str, float]:
    """Median seconds of nnU-Net's sliding-window prediction of ``case`` with each trainer's inference network
    (random weights: the cost does not depend on them), built from the (plans, dataset.json) that the trainer
    leaves in its results folder for the predictor. The trainers take turns in every repeat, each repeat
    starting with the next one, so a drift of the machine's speed affects all of them alike."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.inference import predictor_for_network
    trainer_names = list(inference_setups)
    predictors = {}
    for name, (plans, dataset_json) in inference_setups.items():
        plans_manager = PlansManager(plans)
        configuration_manager = plans_manager.get_configuration(configuration)
        num_outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
        num_inputs = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
        network = recursive_find_trainer_class_by_name(name).build_network_architecture(
            plans_manager, configuration_manager, num_inputs, num_outputs, False)
        predictors[name] = predictor_for_network(network, plans_manager, configuration_manager, dataset_json, name,
                                                 device)
    times: Dict[str, List[float]] = {name: [] for name in trainer_names}
    for repeat in range(repeats + 1):
        for name in trainer_names[repeat % len(trainer_names):] + trainer_names[:repeat % len(trainer_names)]:
            seconds = seconds_of(lambda: predictors[name].predict_sliding_window_return_logits(case), device)
            if repeat > 0:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def predictor_dataset_json(trainer) -> dict:
    """The dataset.json the trainer leaves in its results folder for the predictor."""
    inference_dataset_json = getattr(trainer, "inference_dataset_json", None)
    return trainer.dataset_json if inference_dataset_json is None else inference_dataset_json()


def shut_down(trainer) -> None:
    for loader in (trainer.dataloader_train, trainer.dataloader_val, *getattr(trainer, "streams", {}).values()):
        finish = getattr(loader, "_finish", None) or getattr(loader, "finish", None)
        if finish is not None:
            finish()


def benchmark(dataset: str, configuration: str, plans_identifier: str, trainers: List[str], fold: str,
              warmup: int, steps: int, inference_repeats: int, device: torch.device, batch_size: int = 0,
              training_fraction: float = 1.0) -> Dict:
    """Measure every trainer (each in a fresh process) at ``training_fraction`` of its schedule, then the inference
    networks in turns; the results dictionary (see the module docstring)."""
    if warmup < 3 or steps < 5:
        raise ValueError("Use at least 3 warm-up and 5 measured steps (--warmup, --steps).")
    if not 0.0 <= training_fraction <= 1.0:
        raise ValueError(f"--training-fraction must be in [0, 1], got {training_fraction}")
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.paths import dataset_name

    folder = join(nnUNet_preprocessed, dataset_name(dataset))
    plans = load_json(join(folder, plans_identifier + ".json"))
    if batch_size:
        plans["configurations"][configuration]["batch_size"] = batch_size
    dataset_json = load_json(join(folder, "dataset.json"))
    configuration_manager = PlansManager(plans).get_configuration(configuration)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count())
    inference_setups: Dict[str, Tuple[dict, dict]] = {}

    def measure(name: str, batch_size: int = 0, setup: Tuple[dict, dict] = (plans, dataset_json)) -> Dict:
        result = measured_in_fresh_process(name, setup[0], configuration, fold, setup[1], device, batch_size,
                                           warmup, steps, training_fraction)
        inference_setups.setdefault(name, result.pop("inference_setup"))
        print(f"{name:40s} {setup[0]['dataset_name']:24s} batch {result['total_batch']:3d}  "
              f"step {result['step_s_median']:8.4f} s  peak {result['peak_memory_mb']:9.1f} MB", flush=True)
        return result

    stock = measure(STOCK)
    results = {"device": describe_device(device), "configuration": configuration, "dataset": dataset,
               "training_fraction": training_fraction,
               "labeled_batch": configuration_manager.batch_size,
               "memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the training "
                         "process during the measured steps",
               "stock": {"same_labeled_batch": stock}, "trainers": {}}
    stock_by_batch = {stock["total_batch"]: stock}
    for name in trainers:
        ours = measure(name)
        if ours["total_batch"] not in stock_by_batch:
            stock_by_batch[ours["total_batch"]] = measure(STOCK, ours["total_batch"])
        same_total = stock_by_batch[ours["total_batch"]]
        results["stock"][f"batch_{ours['total_batch']}"] = same_total
        results["trainers"][name] = {
            "step_s_median": ours["step_s_median"],
            "ratio_same_labeled_batch": ours["step_s_median"] / stock["step_s_median"],
            "ratio_same_total_batch": ours["step_s_median"] / same_total["step_s_median"],
            "peak_memory_mb": ours["peak_memory_mb"],
            "memory_ratio_same_labeled_batch": ours["peak_memory_mb"] / stock["peak_memory_mb"],
            "memory_ratio_same_total_batch": ours["peak_memory_mb"] / same_total["peak_memory_mb"],
            "total_batch": ours["total_batch"],
            "last_step": ours["last_step"],
        }
        if "partner_setup" in ours:
            results["trainers"][name].update(two_modality_stock(ours, measure(STOCK, ours["total_batch"] // 2),
                                                                measure(STOCK, ours["total_batch"] // 2,
                                                                        ours["partner_setup"])))

    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    cases_folder = join(folder, configuration_manager.data_identifier)
    cases = infer_dataset_class(cases_folder)(cases_folder)
    case = torch.from_numpy(cases.load_case(cases.identifiers[0])[0][:])
    inference = inference_seconds(inference_setups, configuration, case, inference_repeats, device)
    results["stock"]["inference_s_median"] = inference[STOCK]
    for name in trainers:
        results["trainers"][name]["inference_s_median"] = inference[name]
        results["trainers"][name]["inference_ratio"] = inference[name] / inference[STOCK]
    return results


def two_modality_stock(ours: Dict, primary: Dict, partner: Dict) -> Dict:
    """A two-dataset trainer (CMC) against the two stock trainers it replaces, one per dataset, each at the
    trainer's batch of that dataset (half its total): the sum of their step times, their larger peak memory."""
    stock_seconds = primary["step_s_median"] + partner["step_s_median"]
    stock_peak = max(primary["peak_memory_mb"], partner["peak_memory_mb"])
    return {"stock_two_modalities": {"primary": primary, "partner": partner},
            "ratio_two_stock_modalities": ours["step_s_median"] / stock_seconds,
            "memory_ratio_two_stock_modalities": ours["peak_memory_mb"] / stock_peak}


def describe_device(device: torch.device) -> str:
    """The device and the torch build that ran, for the tables (e.g. ``cpu (2 cores, torch 2.14.1+cu130)``)."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"cpu ({os.cpu_count()} cores, torch {torch.__version__})"


def print_table(results: Dict) -> None:
    print(f"\nDevice: {results['device']}  configuration: {results['configuration']}  memory: {results['memory']}  "
          f"steps at {results['training_fraction']:g} of the schedule")
    print(f"{'trainer':32s} {'step s':>9s} {'×stock same labeled':>20s} {'×stock same total':>18s} "
          f"{'peak MB':>9s} {'mem × same labeled':>19s} {'mem × same total':>17s} {'inference ×':>12s}")
    for name, r in results["trainers"].items():
        print(f"{name:32s} {r['step_s_median']:9.4f} {r['ratio_same_labeled_batch']:20.2f} "
              f"{r['ratio_same_total_batch']:18.2f} {r['peak_memory_mb']:9.1f} "
              f"{r['memory_ratio_same_labeled_batch']:19.2f} {r['memory_ratio_same_total_batch']:17.2f} "
              f"{r['inference_ratio']:12.3f}")
        if "ratio_two_stock_modalities" in r:
            print(f"{'':32s} × the two stock trainers it replaces (one per dataset, batch {r['total_batch'] // 2} "
                  f"each): step {r['ratio_two_stock_modalities']:.2f}, memory "
                  f"{r['memory_ratio_two_stock_modalities']:.2f}")


def run(args: argparse.Namespace) -> None:
    os.environ["nnUNet_results"] = tempfile.mkdtemp(prefix="nnunet_ext_benchmark_")
    results = benchmark(args.dataset, args.configuration, args.plans, args.trainers, args.fold, args.warmup,
                        args.steps, args.inference_repeats, torch.device(args.device), args.batch_size,
                        args.training_fraction)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"results written to {args.json}")
