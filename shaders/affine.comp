#version 450
// y = alpha·x + beta, elementwise.
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint stride; float alpha; float beta; };

void main()
{
  uint i = gl_GlobalInvocationID.y * stride + gl_GlobalInvocationID.x;
  if (i < n)
    y[i] = alpha * x[i] + beta;
}
