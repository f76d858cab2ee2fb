#include "correlationPlugin.h"
#include "correlationKernel.h"

#include <cuda_fp16.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <string>

using namespace nvinfer1;

namespace dcf
{
namespace
{

//! The largest temporal_range whose K*K*2L output channels fit the int32 of outputChannels().
int32_t maxTemporalRange(int32_t kernelSize)
{
    return std::numeric_limits<int32_t>::max() / (2 * kernelSize * kernelSize);
}

//! Empty when the fields are valid, else the error saying what was expected.
std::string attributeError(int32_t kernelSize, int32_t temporalRange)
{
    if (kernelSize < 1 || kernelSize > kMaxKernelSize || kernelSize % 2 == 0)
    {
        return "DCFCorrelation: expected an odd kernel_size in 1.." + std::to_string(kMaxKernelSize)
            + ", got kernel_size=" + std::to_string(kernelSize);
    }
    if (temporalRange < 1 || temporalRange > maxTemporalRange(kernelSize))
    {
        return "DCFCorrelation: expected temporal_range in 1.." + std::to_string(maxTemporalRange(kernelSize))
            + " (K*K*2L output channels within INT32), got temporal_range=" + std::to_string(temporalRange);
    }
    return {};
}

//! One INT32 (what the ONNX parser passes) or INT64 value as int32. An INT64 value outside the INT32
//! range is refused rather than narrowed, which would turn 2^32 + 5 into a valid 5. On failure,
//! `error` says what was expected.
bool readInt(PluginField const& field, int32_t& value, std::string& error)
{
    if (field.data == nullptr || field.length != 1
        || (field.type != PluginFieldType::kINT32 && field.type != PluginFieldType::kINT64))
    {
        error = std::string("DCFCorrelation: expected ") + field.name + " as one INT32 (or INT64) value";
        return false;
    }
    if (field.type == PluginFieldType::kINT32)
    {
        value = *static_cast<int32_t const*>(field.data);
        return true;
    }
    int64_t const wide = *static_cast<int64_t const*>(field.data);
    if (wide < std::numeric_limits<int32_t>::min() || wide > std::numeric_limits<int32_t>::max())
    {
        error = std::string("DCFCorrelation: expected ") + field.name + " in the INT32 range, got "
            + std::to_string(wide);
        return false;
    }
    value = static_cast<int32_t>(wide);
    return true;
}

} // namespace

CorrelationPlugin::CorrelationPlugin(int32_t kernelSize, int32_t temporalRange, std::string nameSpace)
    : mKernelSize(kernelSize)
    , mTemporalRange(temporalRange)
    , mNamespace(std::move(nameSpace))
{
    setFieldsToSerialize();
}

CorrelationPlugin::CorrelationPlugin(CorrelationPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mKernelSize(other.mKernelSize)
    , mTemporalRange(other.mTemporalRange)
    , mNamespace(other.mNamespace)
{
    setFieldsToSerialize(); // point at this object's members, not the other's
}

void CorrelationPlugin::setFieldsToSerialize()
{
    mFields.clear();
    mFields.emplace_back("kernel_size", &mKernelSize, PluginFieldType::kINT32, 1);
    mFields.emplace_back("temporal_range", &mTemporalRange, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

IPluginCapability* CorrelationPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* CorrelationPlugin::clone() noexcept
{
    try
    {
        return new CorrelationPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* CorrelationPlugin::getPluginName() const noexcept
{
    return kCorrelationPluginName;
}

char const* CorrelationPlugin::getPluginVersion() const noexcept
{
    return kCorrelationPluginVersion;
}

char const* CorrelationPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

int32_t CorrelationPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t CorrelationPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || (inputTypes[0] != DataType::kFLOAT && inputTypes[0] != DataType::kHALF))
    {
        logError("DCFCorrelation: expected one float32 or float16 input and one output");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t CorrelationPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || inputs[0].nbDims != 5)
    {
        logError("DCFCorrelation: expected one 5-D input (N, C, T, H, W)");
        return -1;
    }
    outputs[0] = inputs[0]; // (N, K*K*2L, T, H, W)
    outputs[0].d[1] = exprBuilder.constant(outputChannels());
    return 0;
}

bool CorrelationPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    }
    return desc.type == inOut[0].desc.type; // the output has the input's type
}

int32_t CorrelationPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || in[0].desc.dims.nbDims != 5 || out[0].desc.dims.nbDims != 5)
    {
        logError("DCFCorrelation: expected a 5-D input and output");
        return -1;
    }
    return 0;
}

size_t CorrelationPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t CorrelationPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return nbInputs == 1 && nbOutputs == 1 && in[0].dims.nbDims == 5 ? 0 : -1;
}

int32_t CorrelationPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    Dims const& d = inputDesc[0].dims;
    CorrelationShape const shape{d.d[0], d.d[1], d.d[2], d.d[3], d.d[4], mKernelSize, mTemporalRange};
    cudaError_t status = cudaErrorInvalidValue;
    if (inputDesc[0].type == DataType::kFLOAT)
    {
        status = correlationForward(static_cast<float const*>(inputs[0]), static_cast<float*>(outputs[0]), shape, stream);
    }
    else if (inputDesc[0].type == DataType::kHALF)
    {
        status = correlationForward(static_cast<__half const*>(inputs[0]), static_cast<__half*>(outputs[0]), shape, stream);
    }
    if (status != cudaSuccess)
    {
        std::string const message = std::string("DCFCorrelation: kernel launch failed: ") + cudaGetErrorString(status);
        logError(message.c_str());
        return -1;
    }
    return 0;
}

IPluginV3* CorrelationPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* CorrelationPlugin::getFieldsToSerialize() noexcept
{
    return &mFieldCollection;
}

CorrelationPluginCreator::CorrelationPluginCreator()
{
    mFields.emplace_back("kernel_size", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("temporal_range", nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* CorrelationPluginCreator::getPluginName() const noexcept
{
    return kCorrelationPluginName;
}

char const* CorrelationPluginCreator::getPluginVersion() const noexcept
{
    return kCorrelationPluginVersion;
}

char const* CorrelationPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

PluginFieldCollection const* CorrelationPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* CorrelationPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        // Both fields are required: a default would silently build another op than the model's.
        int32_t kernelSize = 0;
        int32_t temporalRange = 0;
        bool haveKernelSize = false;
        bool haveTemporalRange = false;
        std::string error;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields && error.empty(); ++i)
        {
            PluginField const& field = fc->fields[i];
            if (field.name != nullptr && std::strcmp(field.name, "kernel_size") == 0)
            {
                haveKernelSize = readInt(field, kernelSize, error);
            }
            else if (field.name != nullptr && std::strcmp(field.name, "temporal_range") == 0)
            {
                haveTemporalRange = readInt(field, temporalRange, error);
            }
        }
        if (error.empty() && !(haveKernelSize && haveTemporalRange))
        {
            error = std::string("DCFCorrelation: expected the plugin fields kernel_size and temporal_range, ")
                + (haveKernelSize ? "temporal_range is missing"
                                  : haveTemporalRange ? "kernel_size is missing" : "got neither");
        }
        if (error.empty())
        {
            error = attributeError(kernelSize, temporalRange);
        }
        if (!error.empty())
        {
            logError(error.c_str());
            return nullptr;
        }
        return new CorrelationPlugin(kernelSize, temporalRange, mNamespace);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

} // namespace dcf
