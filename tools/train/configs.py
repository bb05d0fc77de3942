"""Configurations of the reverie-tiny components, in the diffusers / transformers config.json
format with the same keys as the published Kandinsky 2.2 folders."""

IMAGE_SIDE = 64
EMBED_DIM = 72  # CLIP text width = CLIP projection = prior embedding = UNet encoder_hid_dim (scenes.EMBED_DIM)


def text_encoder(vocab_size):
    return {
        "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0, "bos_token_id": 0,
        "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": EMBED_DIM, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 288, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
        "num_hidden_layers": 4, "pad_token_id": 1, "projection_dim": EMBED_DIM, "torch_dtype": "float32",
        "transformers_version": "4.40.0", "vocab_size": vocab_size,
    }


def image_encoder():
    return {
        "architectures": ["CLIPVisionModelWithProjection"], "attention_dropout": 0.0, "hidden_act": "gelu",
        "hidden_size": 96, "image_size": IMAGE_SIDE, "initializer_factor": 1.0, "initializer_range": 0.02,
        "intermediate_size": 384, "layer_norm_eps": 1e-05, "model_type": "clip_vision_model",
        "num_attention_heads": 3, "num_channels": 3, "num_hidden_layers": 4, "patch_size": 8,
        "projection_dim": EMBED_DIM, "torch_dtype": "float32", "transformers_version": "4.40.0",
    }


def prior():
    return {
        "_class_name": "PriorTransformer", "_diffusers_version": "0.31.0", "added_emb_type": "prd",
        "additional_embeddings": 4, "attention_head_dim": 32, "clip_embed_dim": None, "dropout": 0.0,
        "embedding_dim": EMBED_DIM, "embedding_proj_dim": None, "embedding_proj_norm_type": None,
        "encoder_hid_proj_type": "linear", "norm_in_type": None, "num_attention_heads": 4,
        "num_embeddings": 77, "num_layers": 4, "time_embed_act_fn": "silu", "time_embed_dim": None,
    }


def unet(in_channels=4):
    return {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.31.0", "act_fn": "silu",
        "addition_embed_type": "image", "addition_embed_type_num_heads": 64, "addition_time_embed_dim": None,
        "attention_head_dim": 32, "attention_type": "default", "block_out_channels": [32, 64, 128],
        "center_input_sample": False, "class_embed_type": None, "class_embeddings_concat": False,
        "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 64, "cross_attention_norm": None,
        "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
        "downsample_padding": 1, "dropout": 0.0, "dual_cross_attention": False, "encoder_hid_dim": EMBED_DIM,
        "encoder_hid_dim_type": "image_proj", "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": in_channels,
        "layers_per_block": 1, "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
        "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 8,
        "projection_class_embeddings_input_dim": None, "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
        "resnet_time_scale_shift": "scale_shift", "reverse_transformer_layers_per_block": None, "sample_size": None,
        "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
        "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": 1,
        "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        "upcast_attention": False, "use_linear_projection": False,
    }


def movq():
    return {
        "_class_name": "VQModel", "_diffusers_version": "0.31.0", "act_fn": "silu", "block_out_channels": [32, 32, 64],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        "force_upcast": False, "in_channels": 3, "latent_channels": 4, "layers_per_block": 1,
        "lookup_from_codebook": False, "mid_block_add_attention": True, "norm_num_groups": 8, "norm_type": "spatial",
        "num_vq_embeddings": 64, "out_channels": 3, "sample_size": IMAGE_SIDE, "scaling_factor": 0.18215,
        "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"], "vq_embed_dim": 4,
    }


def prior_scheduler():
    return {"_class_name": "UnCLIPScheduler", "_diffusers_version": "0.31.0", "beta_schedule": "squaredcos_cap_v2",
            "clip_sample": True, "clip_sample_range": 10.0, "num_train_timesteps": 1000, "prediction_type": "sample",
            "variance_type": "fixed_small_log"}


def ddpm_scheduler():
    # the UNets predict x0 ("sample"): for flat-colour scenes it learns the layout at high noise
    # much faster than epsilon prediction
    return {"_class_name": "DDPMScheduler", "_diffusers_version": "0.31.0", "beta_end": 0.012, "beta_schedule": "linear",
            "beta_start": 0.00085, "clip_sample": False, "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995,
            "num_train_timesteps": 1000, "prediction_type": "sample", "rescale_betas_zero_snr": False,
            "sample_max_value": 1.0, "steps_offset": 1, "thresholding": False, "timestep_spacing": "leading",
            "trained_betas": None, "variance_type": "fixed_small"}


def image_processor():
    return {"crop_size": {"height": IMAGE_SIDE, "width": IMAGE_SIDE}, "do_center_crop": True, "do_convert_rgb": True,
            "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": IMAGE_SIDE}}


def upscaler(num_feat=32, num_conv=8):
    # Real-ESRGAN's SRVGGNetCompact, x4: 64 -> 256 px, and applied again 256 -> 1024 px
    return {"architecture": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": num_feat,
            "num_conv": num_conv, "upscale": 4, "act_type": "prelu"}


def upscaler_of(state):
    """The upscaler config of SRVGGNetCompact weights (num_feat and num_conv read from the shapes)."""
    convs = sorted(int(k.split(".")[1]) for k in state if k.endswith(".bias"))
    return upscaler(int(state["body.0.weight"].shape[0]), len(convs) - 2)
