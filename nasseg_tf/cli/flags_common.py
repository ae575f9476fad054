"""Flags shared by the gin-configured tools (train, eval, search)."""

from absl import flags


def define_gin_flags(flag_values=flags.FLAGS, model_dir_required=True):
    flags.DEFINE_multi_string("gin_file", [], "gin files, applied in order.",
                              flag_values=flag_values)
    flags.DEFINE_multi_string("gin_bindings", [],
                              "gin bindings applied after the files, e.g. "
                              "\"Training.steps = 100\".", flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "The run's output folder.",
                        flag_values=flag_values)
    if model_dir_required:
        flags.mark_flag_as_required("model_dir", flag_values=flag_values)
