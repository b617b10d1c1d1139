"""Our DDP-sensitive code on two CPU processes (``gloo``), as ``nnUNetv2_train -num_gpus 2`` runs it on GPUs.

nnU-Net starts DDP only on CUDA: its trainer moves itself to ``cuda:<rank>`` and wraps the network with
``DDP(device_ids=[rank])``. Here each rank builds the real trainer in an initialised ``gloo`` process group, sets
its device back to the CPU and lets nnU-Net's own ``initialize`` wrap the network (``device_ids`` dropped, as DDP
requires for CPU modules); everything else — nnU-Net's batch split, our stream split, train steps with DDP's
gradient averaging, the EMA teacher, the epoch's term gathering, checkpoint writing — is the code ``-num_gpus 2``
runs.
"""
import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

DATASET_ID, WORLD_SIZE, STEPS = 944, 2, 3


def cpu_ddp(module, device_ids=None, **kwargs):
    """nnU-Net's ``DDP(network, device_ids=[rank])`` for a CPU module (DDP accepts ``device_ids`` only on GPUs)."""
    return torch.nn.parallel.DistributedDataParallel(module, **kwargs)


def rank_main(rank: int, init_file: str, plans: dict, dataset_json: dict, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer_module
    nnunet_trainer_module.DDP = cpu_ddp
    from nnunet_ext.trainers import nnUNetTrainerMeanTeacher

    class MeanTeacherThreeUnlabeled(nnUNetTrainerMeanTeacher):
        unlabeled_batch_size = 3

    trainer = MeanTeacherThreeUnlabeled(dict(plans, continue_training=False), "3d_tiny", 0, dataset_json,
                                        torch.device("cpu"))
    assert trainer.is_ddp and trainer.local_rank == rank
    trainer.device, trainer.grad_scaler = torch.device("cpu"), None
    trainer.initialize()
    trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    trainer.set_deep_supervision_enabled(True)
    trainer.network.train()
    stream = trainer.streams["unlabeled"]
    drawn, real_next = [], stream.__class__.__next__

    def recording(self):
        batch = real_next(self)
        drawn.append([float(v) for v in batch["data"].flatten(1).sum(1)])
        return batch

    stream.__class__.__next__ = recording
    outputs = [trainer.train_step(next(trainer.dataloader_train)) for _ in range(STEPS)]
    stream.finish()
    trainer.on_train_epoch_end(outputs)
    saves, real_save = [], torch.save
    torch.save = lambda obj, f, *a, **k: (saves.append(str(f)), real_save(obj, f, *a, **k))
    trainer.save_checkpoint(os.path.join(out_dir, "checkpoint_latest.pth"))
    teacher = trainer.teacher.state_dict()
    result = {
        "labeled_batch": trainer.batch_size, "unlabeled_batch": stream.loader.batch_size, "drawn": drawn,
        "local_consistency": [float(o["loss_consistency"]) for o in outputs],
        "logged_consistency": trainer.logger.get_value("loss_consistency", None),
        "teacher_checksum": sum(float(v.double().sum()) for v in teacher.values()),
        "saves": saves,
        "student_checksum": sum(float(v.double().sum()) for v in trainer.student.state_dict().values()),
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def dataset(nnunet_folders):
    from conftest import add_tiny_configuration  # here, not at the top: the spawned ranks import this module
    from nnunet_ext.cli import main as nnunet_ext
    from nnunet_ext.dataset_conversion.synthetic import write_synthetic_dataset
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    write_synthetic_dataset(DATASET_ID, "SynthDDP", num_labeled=5, num_unlabeled=4, num_test=0,
                            raw_root=nnunet_folders["nnUNet_raw"])
    nnunet_ext(["plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"])
    folder = Path(nnunet_folders["nnUNet_preprocessed"]) / maybe_convert_to_dataset_name(DATASET_ID)
    add_tiny_configuration(str(folder / "nnUNetPlans.json"))
    return json.loads((folder / "nnUNetPlans.json").read_text()), json.loads((folder / "dataset.json").read_text())


def test_two_gloo_ranks(dataset, tmp_path):
    plans, dataset_json = dataset
    mp.spawn(rank_main, args=(str(tmp_path / "init"), plans, dataset_json, str(tmp_path)), nprocs=WORLD_SIZE)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert [r["labeled_batch"] for r in ranks] == [1, 1]  # nnU-Net splits the plans' batch of 2
    assert [r["unlabeled_batch"] for r in ranks] == [2, 1]  # ours splits unlabeled_batch_size 3 the same way
    assert ranks[0]["drawn"] != ranks[1]["drawn"]  # the ranks' unlabeled streams draw different patches
    assert ranks[0]["teacher_checksum"] == ranks[1]["teacher_checksum"]  # identical teachers after 3 steps
    assert ranks[0]["student_checksum"] == ranks[1]["student_checksum"]
    local_means = [sum(r["local_consistency"]) / STEPS for r in ranks]
    assert local_means[0] != local_means[1]
    for r in ranks:  # each rank logs the mean over both ranks' steps
        assert r["logged_consistency"] == [pytest.approx(sum(local_means) / WORLD_SIZE)]
    assert len(ranks[0]["saves"]) == 1 and ranks[1]["saves"] == []
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["checkpoint_latest.pth"]
