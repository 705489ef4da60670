"""Built-in panels of `testbed render`, one module each."""

from testbed.plugin_api.hookspecs import hookimpl

from .accuracy import accuracy
from .assemblers import assemblers
from .attention_graph import attention_graph
from .attention_history import attention_history
from .attention_map import attention_map
from .attention_output import attention_output
from .emb_sum import emb_sum
from .loss import loss
from .mlp_input import mlp_input
from .norm_emb import norm_emb
from .output import output
from .output_lines import output_lines
from .pos_emb import pos_emb
from .receptors import receptors
from .seq_emb import seq_emb
from .step_loss_trace import step_loss
from .token_emb import token_emb
from .value import value
from .xi_field import xi_field
from .zeta import zeta


@hookimpl
def testbed_panels():
    return [
        token_emb, pos_emb, emb_sum, norm_emb, value,
        attention_map, attention_graph, attention_history, seq_emb, attention_output,
        mlp_input, receptors, assemblers, xi_field, zeta,
        output_lines, output, loss, accuracy, step_loss,
    ]
