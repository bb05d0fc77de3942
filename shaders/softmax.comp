#version 450
// Softmax over the last dim: one subgroup per row. A first pass keeps a running
// max and a sum rescaled to it per lane (online softmax), the subgroup combines
// them, and a second pass writes exp(x − max) / sum. y may be x: every element
// is read and then written by the same invocation.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint rows, n; };

void
main ()
{
  // a grid-stride loop over rows, so any subgroup size covers every row
  const uint total = gl_NumWorkGroups.x * gl_NumWorkGroups.y * gl_NumSubgroups;
  const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_NumSubgroups
                     + gl_SubgroupID;
  for (uint row = first; row < rows; row += total)   // uniform in the subgroup
    {
      const uint base = row * n;
      // -3e38 rather than -inf keeps exp (m − m') finite when a lane sees only -inf
      float m = -3e38, l = 0.0;
      for (uint c = gl_SubgroupInvocationID; c < n; c += gl_SubgroupSize)
        {
          const float xv = x[base + c];
          const float mn = max (m, xv);
          l = l * exp (m - mn) + exp (xv - mn);
          m = mn;
        }
      const float rm = subgroupMax (m);
      const float inv = 1.0 / subgroupAdd (l * exp (m - rm));
      for (uint c = gl_SubgroupInvocationID; c < n; c += gl_SubgroupSize)
        y[base + c] = exp (x[base + c] - rm) * inv;
    }
}
